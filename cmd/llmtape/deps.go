package main

// deps pins the chosen modules in go.mod while the packages that use them are written.
// Remove this file once every module is imported for real.

import (
	_ "github.com/HdrHistogram/hdrhistogram-go"
	_ "github.com/andybalholm/brotli"
	_ "github.com/elazarl/goproxy"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/openai/openai-go/v3"
	_ "github.com/spf13/cobra"
	_ "github.com/tiktoken-go/tokenizer"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/term"
)
