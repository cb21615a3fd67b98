package output_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/llmtape/llmtape/output"
)

func ExampleWrite() {
	dir, _ := os.MkdirTemp("", "output-example-")
	defer os.RemoveAll(dir)
	store := filepath.Join(dir, "llmtape.db")
	os.WriteFile(store, []byte("a store"), 0o600)

	err := output.Write(store, output.Options{Store: store}, func(w io.Writer) error {
		_, err := io.WriteString(w, "report\n")
		return err
	})
	fmt.Println(errors.Is(err, output.ErrIsStore))

	err = output.Write(filepath.Join(dir, "report.txt"), output.Options{Store: store}, func(w io.Writer) error {
		_, err := io.WriteString(w, "report\n")
		return err
	})
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}

func ExampleWriteTable() {
	up := 0.25
	secs := []output.Section{{Title: "runs", Cols: []string{"run", "requests", "ttft_ms", "change"},
		Rows: [][]output.Cell{
			{output.Text("nightly"), output.Int(1200), output.Num(52.125), output.Change(&up)},
			{output.Text("=cmd()"), output.Int(12_345_678), output.Num(0.5), output.Change(nil)},
		}}}
	output.WriteTable(os.Stdout, "llmtape report", secs)
	output.WriteCSV(os.Stdout, secs)
	secs[0].WriteCSV(os.Stdout)
	// Output:
	// llmtape report
	//
	// == runs ==
	// run      requests  ttft_ms  change
	// nightly      1200    52.12  +25.0%
	// =cmd()      12.3M    0.500       -
	// section,row,column,value
	// runs,nightly,requests,1200
	// runs,nightly,ttft_ms,52.125
	// runs,nightly,change,0.25
	// runs,'=cmd(),requests,12345678
	// runs,'=cmd(),ttft_ms,0.5
	// runs,'=cmd(),change,-
	// run,requests,ttft_ms,change
	// nightly,1200,52.125,0.25
	// '=cmd(),12345678,0.5,-
}
