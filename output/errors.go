package output

import "errors"

// ErrIsStore is returned (wrapped with the output's path) by Check, Create and Write when the
// output is the store named in Options, by whatever path.
var ErrIsStore = errors.New("is the store: name another file")

// ErrIsDir is returned (wrapped with the output's path) when the output is a directory.
var ErrIsDir = errors.New("is a directory: name a file")
