package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gostream/gostream/kafkasrc"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

func newConsumeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consume --topic T",
		Short: "Print a topic's record values to stdout, one per line",
		Long: `Consume prints the values of a topic's records to stdout, one per line, like
kafka-console-consumer. It starts at the end of every partition (only new
records) unless --from-beginning is given, reads partitions directly (no
consumer group, nothing committed) and runs until interrupted, until
--max-messages records are printed, or until no record arrives for --timeout.`,
		Example: `  gostream consume --topic logs --from-beginning --max-messages 10
  gostream consume --topic logs --print-key --timeout 5s`,
		Args: cobra.NoArgs,
	}
	brokers := addBrokersFlag(cmd)
	topic := cmd.Flags().String("topic", "", "topic to read (required)")
	fromBeginning := cmd.Flags().Bool("from-beginning", false, "start at the earliest offset instead of the end")
	maxMessages := cmd.Flags().Int64("max-messages", 0, "stop after this many records (0 = no limit)")
	printKey := cmd.Flags().Bool("print-key", false, `print "key<TAB>value" (a null key prints as "null")`)
	timeout := cmd.Flags().Duration("timeout", 0, "stop when no record arrives for this long (0 = wait forever)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *topic == "" {
			return errors.New("--topic is required (e.g. --topic logs)")
		}
		if *maxMessages < 0 {
			return fmt.Errorf("--max-messages is %d; want 0 (no limit) or more", *maxMessages)
		}
		if *timeout < 0 {
			return fmt.Errorf("--timeout is %v; want 0 (wait forever) or a duration such as 10s", *timeout)
		}
		b, err := brokers()
		if err != nil {
			return err
		}
		return consume(cmd, consumeOptions{
			brokers: b, topic: *topic, fromBeginning: *fromBeginning,
			maxMessages: *maxMessages, printKey: *printKey, idle: *timeout,
		})
	}
	return cmd
}

type consumeOptions struct {
	brokers       []string
	topic         string
	fromBeginning bool
	maxMessages   int64
	printKey      bool
	idle          time.Duration
}

func consume(cmd *cobra.Command, o consumeOptions) error {
	ctx := cmd.Context()
	// Resolve the start offsets up front: a missing topic fails with a hint
	// and "the end" means the end when the command started.
	admin, err := kafkasrc.NewAdmin(o.brokers, 0)
	if err != nil {
		return err
	}
	info, err := admin.DescribeTopic(ctx, o.topic)
	admin.Close()
	if err != nil {
		return err
	}
	start := map[int32]kgo.Offset{}
	for _, p := range info.Partitions {
		off := p.Latest
		if o.fromBeginning {
			off = p.Earliest
		}
		start[p.Partition] = kgo.NewOffset().At(off)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.topic: start}))
	if err != nil {
		return err
	}
	defer cl.Close()

	out := bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10)
	var n int64
	defer func() { fmt.Fprintf(cmd.ErrOrStderr(), "Processed a total of %d messages\n", n) }()
	for o.maxMessages == 0 || n < o.maxMessages {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if o.idle > 0 {
			pollCtx, cancel = context.WithTimeout(ctx, o.idle)
		}
		fetches := cl.PollFetches(pollCtx)
		idle := pollCtx.Err() != nil
		cancel()
		if ctx.Err() != nil || idle {
			break // interrupted, or nothing new for --timeout
		}
		for _, fe := range fetches.Errors() {
			var loss *kgo.ErrDataLoss // informational: the client skipped deleted records
			if !errors.As(fe.Err, &loss) {
				return fmt.Errorf("kafka: reading %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		for it := fetches.RecordIter(); !it.Done() && (o.maxMessages == 0 || n < o.maxMessages); n++ {
			r := it.Next()
			if o.printKey {
				if r.Key == nil {
					out.WriteString("null")
				} else {
					out.Write(r.Key)
				}
				out.WriteByte('\t')
			}
			out.Write(r.Value)
			out.WriteByte('\n')
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return out.Flush()
}
