package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

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

// outputFlags are the --format and -o/--output flags of every command that prints a result:
// declared by bind, checked by parse before anything is read, and used by write.
type outputFlags struct {
	format  string
	output  string
	formats []output.Format // what --format accepts
}

// bind declares the flags. formats are what --format accepts (table, json and csv when none
// are given); the default is table.
func (o *outputFlags) bind(cmd *cobra.Command, formats ...output.Format) {
	if len(formats) == 0 {
		formats = []output.Format{output.Table, output.JSON, output.CSV}
	}
	o.formats = formats
	names := make([]string, len(formats))
	for i, f := range formats {
		names[i] = string(f)
	}
	list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	cmd.Flags().StringVar(&o.format, "format", string(output.Table), "output format: "+list)
	cmd.Flags().StringVarP(&o.output, "output", "o", "-", "write to this file instead of stdout (-)")
}

// parse checks the format and the output file before anything is read. "text" (and "") is
// read as table. The output must not be the store: replacing it would destroy the file being
// read.
func (o *outputFlags) parse(cmd *cobra.Command) (output.Format, error) {
	name := o.format
	if name == "" || strings.EqualFold(name, "text") {
		name = string(output.Table)
	}
	f, err := output.ParseFormat(name, o.formats...)
	if err != nil {
		return "", usageErrorf("--format: %v", err)
	}
	if err := checkOutput(cmd, o.output); err != nil {
		return "", err
	}
	return f, nil
}

// write renders through fn into stdout or the --output file (see package output).
func (o *outputFlags) write(cmd *cobra.Command, fn func(w io.Writer) error) error {
	return output.Write(o.output, outputOpts(cmd), fn)
}

// print writes a command's result in format f to stdout or the --output file: v as JSON,
// csv's one flat section as CSV, or what table writes.
func (o *outputFlags) print(cmd *cobra.Command, f output.Format, v any, table func(io.Writer) error, csv func() output.Section) error {
	return o.write(cmd, func(w io.Writer) error {
		switch f {
		case output.JSON:
			return output.WriteJSON(w, v)
		case output.CSV:
			return csv().WriteCSV(w)
		}
		return table(w)
	})
}
