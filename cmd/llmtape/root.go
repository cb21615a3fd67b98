package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/output"
)

// defaultStore is the store file used when neither --store nor $LLMTAPE_STORE names one.
const defaultStore = "llmtape.db"

// commands holds the constructors of the subcommands. Each command file adds its own in init,
// so that adding a command touches only its file.
var commands []func() *cobra.Command

// register adds a subcommand constructor; call it from an init function.
func register(newCmd func() *cobra.Command) { commands = append(commands, newCmd) }

// usageError marks an error as the user's misuse of the command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usageErrorf returns a usage error (exit status 2) with a formatted message.
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries a specific exit status with an optional message (for example 130 after
// Ctrl-C, or 1 from "compare --fail-on" with the reason already printed).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// newRootCmd builds the whole command tree. Tests call it to drive the real commands.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "llmtape",
		Short: "Record, replay and analyse multi-turn LLM chat traffic",
		Long: `llmtape records real multi-turn chat traffic between OpenAI-compatible clients and
servers into one store file, replays those conversations against another server with the
original or scaled timing while measuring streaming latency (TTFT, ITL, TPOT, E2E, throughput,
goodput), and analyses recordings and replays offline.`,
		Example: `  llmtape sim --listen 127.0.0.1:8000 &
  llmtape record --upstream http://127.0.0.1:8000 --listen 127.0.0.1:8080
  llmtape replay --target http://127.0.0.1:8000 --speed 2
  llmtape compare recording latest`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	store := os.Getenv("LLMTAPE_STORE")
	if store == "" {
		store = defaultStore
	}
	root.PersistentFlags().String("store", store, "store file; $LLMTAPE_STORE sets the default")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	for _, newCmd := range commands {
		root.AddCommand(newCmd())
	}
	return root
}

// storePath returns the value of the persistent --store flag.
func storePath(cmd *cobra.Command) string {
	p, _ := cmd.Flags().GetString("store")
	return p
}

// run executes the command line args and returns the process exit status. Errors are printed
// as one line on stderr.
//
// ctx is canceled by the first Ctrl-C or SIGTERM (see main): this is the one place where
// signals reach the commands. Every long command passes cmd.Context() to the library, which
// stops within a second; a command that ends with an error once ctx is done exits 130 with
// "llmtape: NAME interrupted: ...", unless it returned an exitError that says what it saved.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "llmtape:", ee.msg)
		}
		return ee.code
	}
	if ctx.Err() != nil && cmd != nil {
		fmt.Fprintf(stderr, "llmtape: %s interrupted: %s\n", cmd.Name(), oneLine(err.Error()))
		return 130
	}
	fmt.Fprintln(stderr, "llmtape:", oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

// isCobraUsage reports whether err is one of cobra's own command-line errors, which carry no
// type of their own.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag",
		"accepts ", "requires at least", "requires at most", "requires exactly", "invalid argument",
		"flag needs an argument", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// writeJSON writes v as every command's --format json does (output.WriteJSON).
func writeJSON(w io.Writer, v any) error { return output.WriteJSON(w, v) }
