// Command gostream runs Spark Structured Streaming-style jobs on Apache Kafka:
// submit runs a registered job, produce and consume move lines in and out of
// Kafka, topics manages topics, worker runs a member of a cluster of workers
// and cluster inspects one.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "gostream:", err)
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "gostream",
		Short:         "Spark Structured Streaming-style stream processing for Apache Kafka, in one Go binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(commands()...)
	return root
}
