package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/output"
)

func init() { register(newVersionCmd) }

// version is the release version, set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/llmtape
var version = "dev"

// gitCommit is the commit, for builds without VCS information (-buildvcs=false):
//
//	go build -ldflags "-X main.gitCommit=$(git rev-parse HEAD)" ./cmd/llmtape
var gitCommit = ""

// buildVersion is what `llmtape version` prints.
type buildVersion struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Modified bool   `json:"modified"`
	Go       string `json:"go"`
}

func readBuildVersion() buildVersion {
	v := buildVersion{Version: version, Commit: gitCommit, Go: runtime.Version()}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v.Version = info.Main.Version // go install module@version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func newVersionCmd() *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the version, commit and Go version",
		Long:    "Version prints the release version, the commit it was built from and the Go version.\n--format text is the same as table.",
		Example: "  llmtape version\n  llmtape version --format json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := out.parse(cmd)
			if err != nil {
				return err
			}
			v := readBuildVersion()
			return out.print(cmd, f, v, v.writeTable, v.csv)
		},
	}
	out.bind(cmd)
	return cmd
}

func (v buildVersion) writeTable(w io.Writer) error {
	commit := v.Commit
	if v.Modified {
		commit += " (modified)"
	}
	_, err := fmt.Fprintf(w, "llmtape %s\ncommit  %s\ngo      %s\n", v.Version, commit, v.Go)
	return err
}

func (v buildVersion) csv() output.Section {
	return output.Section{Cols: []string{"version", "commit", "modified", "go"}, Rows: [][]output.Cell{{
		output.Text(v.Version), output.Text(v.Commit), output.Text(strconv.FormatBool(v.Modified)), output.Text(v.Go)}}}
}
