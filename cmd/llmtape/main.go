// Command llmtape records multi-turn LLM chat traffic through a proxy, replays it against another
// server with the original or scaled timing while measuring streaming latency, and analyses
// recordings and replays offline. Run "llmtape --help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
