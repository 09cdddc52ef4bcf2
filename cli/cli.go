// Package cli is gostream's command line as a library. A program that
// registers jobs of its own (engine.RegisterJob) and then calls Main gets
// every gostream command (submit, produce, consume, topics, worker, kafka,
// cluster, jobs) with those jobs beside the built-in ones (wordcount,
// wordcount-words), without a fork of cmd/gostream, which is Main and
// nothing else:
//
//	func main() {
//		if err := engine.RegisterJob(engine.Job{Name: "levels", Build: levels}); err != nil {
//			log.Fatal(err)
//		}
//		cli.Main()
//	}
//
// examples/levels is such a program. Workers of a cluster must all run a
// binary with the same jobs. Commands write to the process's standard
// output and error only; no goroutine of theirs outlives Run.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs the command line given by os.Args and exits the process with
// Run's status. SIGINT and SIGTERM stop the command as Ctrl-C does (a query
// stops at a batch boundary).
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// Run runs the command line args (without the program name) on the
// process's standard streams until the command ends or ctx is done. It
// returns the exit status: 0 when the command succeeded, 1 after printing
// its error on standard error (nothing more when ctx was canceled).
func Run(ctx context.Context, args []string) int {
	name := filepath.Base(os.Args[0])
	cmd := newRootCmd(name)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		return 1
	}
	return 0
}

// newRootCmd is the command line of a program called name.
func newRootCmd(name string) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         "Spark Structured Streaming-style stream processing for Apache Kafka, in one Go binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(commands()...)
	return root
}
