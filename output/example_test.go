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
