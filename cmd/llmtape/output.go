package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/output"
)

// outputOpts are the output.Options of a command: the --store it uses is protected, and "-"
// is its stdout.
func outputOpts(cmd *cobra.Command) output.Options {
	return output.Options{Store: storePath(cmd), Stdout: cmd.OutOrStdout()}
}

// checkOutput refuses an output file that is the store or a directory, as a usage error. It
// runs before the store is opened, so that nothing is read before a mistake is reported.
func checkOutput(cmd *cobra.Command, path string) error {
	err := output.Check(path, outputOpts(cmd))
	if errors.Is(err, output.ErrIsStore) || errors.Is(err, output.ErrIsDir) {
		return usageError{fmt.Errorf("%s: %w", cmd.Name(), err)}
	}
	return err
}
