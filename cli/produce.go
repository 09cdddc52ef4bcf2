package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/gostream/gostream/kafkasrc"
	"github.com/spf13/cobra"
)

// produceProgressEvery is how often produce reports progress on stderr.
const produceProgressEvery = 2 * time.Second

func newProduceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "produce --topic T [FILE...|-]",
		Short: "Produce lines from files or stdin to a Kafka topic, one record per line",
		Long: `Produce reads files (or stdin, "-", the default) and produces one record per
line: the newline and a "\r" before it are stripped, nothing else changes, and
a line longer than --max-record-bytes is an error (never truncated or split).
With -f it keeps following the files like tail -F, across rotation and
truncation, until interrupted. It returns once every record is acknowledged.

Ctrl-C (or SIGTERM) stops reading at a line boundary and waits up to 10s for
the acknowledgements; the report names, per file, the first line not
acknowledged and its byte offset: every line before it is in the topic, and
--from-offset continues from there. While no broker acknowledges, a warning
says how much is buffered; when the buffer is full, reading waits (nothing is
dropped).`,
		Example: `  gostream produce --brokers s1:9092,s2:9092,s3:9092 --topic logs access.log
  tail -F app.log | gostream produce --topic logs
  gostream produce --topic logs -f /var/log/app/*.log --compression lz4
  gostream produce --topic logs --from-offset 123456 access.log   # after a stop`,
	}
	brokers := addBrokersFlag(cmd)
	topic := cmd.Flags().String("topic", "", "topic to produce to (required; it must exist)")
	follow := cmd.Flags().BoolP("follow", "f", false, "keep following the files as they grow, like tail -F")
	compression := cmd.Flags().String("compression", "none", "record batch compression: "+strings.Join(kafkasrc.Compressions, ", "))
	linger := cmd.Flags().Duration("linger", kafkasrc.DefaultLinger, "how long to wait for more records before sending a batch")
	maxRecord := cmd.Flags().Int("max-record-bytes", kafkasrc.DefaultMaxRecordBytes, "longest line accepted, in bytes")
	maxBufRecords := cmd.Flags().Int("max-buffered-records", kafkasrc.DefaultMaxBufferedRecords, "records read but not yet acknowledged, at most; then reading waits")
	maxBufBytes := cmd.Flags().Int64("max-buffered-bytes", kafkasrc.DefaultMaxBufferedBytes, "bytes of lines read but not yet acknowledged, at most; then reading waits")
	fromOffset := cmd.Flags().Int64("from-offset", 0, "start reading the one FILE at this byte offset, the start of a line (as a stopped run reports)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *topic == "" {
			return fmt.Errorf("--topic is required (e.g. --topic logs)")
		}
		if !slices.Contains(kafkasrc.Compressions, *compression) {
			return fmt.Errorf("--compression %q: want one of %s", *compression, strings.Join(kafkasrc.Compressions, ", "))
		}
		if *linger < 0 {
			return fmt.Errorf("--linger is %v; want 0 or more (e.g. 5ms)", *linger)
		}
		if *maxRecord < 1 {
			return fmt.Errorf("--max-record-bytes is %d; want 1 or more", *maxRecord)
		}
		if *maxBufRecords < 1 || *maxBufBytes < int64(*maxRecord) {
			return fmt.Errorf("--max-buffered-records is %d and --max-buffered-bytes %d; want 1 or more, and bytes at least --max-record-bytes (%d)", *maxBufRecords, *maxBufBytes, *maxRecord)
		}
		b, err := brokers()
		if err != nil {
			return err
		}
		if len(args) == 0 {
			args = []string{"-"}
		}
		if *fromOffset < 0 || *fromOffset > 0 && len(args) != 1 {
			return fmt.Errorf("--from-offset is %d for %d inputs; want 0 or more, with one input", *fromOffset, len(args))
		}
		stderr := cmd.ErrOrStderr()
		cfg := kafkasrc.ProduceConfig{
			Brokers:            b,
			Topic:              *topic,
			Compression:        *compression,
			Linger:             *linger,
			MaxRecordBytes:     *maxRecord,
			MaxBufferedRecords: *maxBufRecords,
			MaxBufferedBytes:   *maxBufBytes,
			FromOffset:         *fromOffset,
			Follow:             *follow,
			Stdin:              cmd.InOrStdin(),
			ProgressInterval:   produceProgressEvery,
			Progress: func(s kafkasrc.ProduceStats) {
				fmt.Fprintf(stderr, "produce: %d lines, %d acked, %.1f MB/s\n", s.Lines, s.Acked, mbPerSec(s))
			},
			Logger: slog.Default(),
		}
		stats, err := kafkasrc.ProduceLines(cmd.Context(), cfg, args...)
		printProduceReport(stderr, *topic, stats, err)
		return err
	}
	return cmd
}

// printProduceReport tells how much of the input is in the topic: the
// count, and for each input not done, where to continue.
func printProduceReport(w io.Writer, topic string, s kafkasrc.ProduceStats, err error) {
	switch {
	case err == nil:
		fmt.Fprintf(w, "produced %d records (acked) to %s in %.1fs\n", s.Acked, topic, s.Elapsed.Seconds())
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(w, "stopped: produced %d records (acked) to %s in %.1fs\n", s.Acked, topic, s.Elapsed.Seconds())
	default:
		fmt.Fprintf(w, "produced %d records (acked) to %s before the error\n", s.Acked, topic)
	}
	for _, in := range s.Inputs {
		if in.Done || in.Name == "stdin" && in.Lines == 0 {
			continue
		}
		where := fmt.Sprintf("byte offset %d", in.Resume.Offset)
		if in.Resume.Line > 0 {
			where = fmt.Sprintf("line %d (byte offset %d)", in.Resume.Line, in.Resume.Offset)
		}
		next := fmt.Sprintf("continue with --from-offset %d", in.Resume.Offset)
		if in.Rotated {
			where += " of the file rotated away from it"
			next = "the rest of that file is in its rotated copy"
		}
		if notAcked := in.Lines - in.Acked; notAcked == 0 {
			fmt.Fprintf(w, "%s: every line before %s is in %s, and no line after it was sent; %s\n", in.Name, where, topic, next)
		} else {
			fmt.Fprintf(w, "%s: every line before %s is in %s; of the %d lines read from there on, %d were acknowledged and %d may or may not be in %s, so resuming there sends them again; %s\n",
				in.Name, where, topic, in.AckedAfter+notAcked, in.AckedAfter, notAcked, topic, next)
		}
	}
}

func mbPerSec(s kafkasrc.ProduceStats) float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Bytes) / 1e6 / s.Elapsed.Seconds()
}
