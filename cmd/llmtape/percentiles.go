package main

import (
	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/metrics"
)

// percentilesUsage is the help of --percentiles, the same on every command that prints
// distributions.
const percentilesUsage = "percentiles the table, CSV and page show, e.g. 50,90,95,99,99.9 (of 25, 50, 75, 90, 95, 99, 99.9, 99.99; default: each table's, with 99.9 and 99.99 added from 1,000 / 10,000 samples; JSON always has every one)"

// bindPercentiles adds --percentiles to cmd, bound to s.
func bindPercentiles(cmd *cobra.Command, s *string) {
	cmd.Flags().StringVar(s, "percentiles", "", percentilesUsage)
}

// parsePercentiles reads --percentiles (metrics.ParsePercentiles), a usage error when bad.
func parsePercentiles(s string) ([]float64, error) {
	ps, err := metrics.ParsePercentiles(s)
	if err != nil {
		return nil, usageErrorf("--%v", err)
	}
	return ps, nil
}
