package main

import (
	"fmt"
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
truncation, until interrupted. It returns once every record is acknowledged.`,
		Example: `  gostream produce --brokers s1:9092,s2:9092,s3:9092 --topic logs access.log
  tail -F app.log | gostream produce --topic logs
  gostream produce --topic logs -f /var/log/app/*.log --compression lz4`,
	}
	brokers := addBrokersFlag(cmd)
	topic := cmd.Flags().String("topic", "", "topic to produce to (required; it must exist)")
	follow := cmd.Flags().BoolP("follow", "f", false, "keep following the files as they grow, like tail -F")
	compression := cmd.Flags().String("compression", "none", "record batch compression: "+strings.Join(kafkasrc.Compressions, ", "))
	linger := cmd.Flags().Duration("linger", kafkasrc.DefaultLinger, "how long to wait for more records before sending a batch")
	maxRecord := cmd.Flags().Int("max-record-bytes", kafkasrc.DefaultMaxRecordBytes, "longest line accepted, in bytes")
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
		b, err := brokers()
		if err != nil {
			return err
		}
		if len(args) == 0 {
			args = []string{"-"}
		}
		stderr := cmd.ErrOrStderr()
		cfg := kafkasrc.ProduceConfig{
			Brokers:          b,
			Topic:            *topic,
			Compression:      *compression,
			Linger:           *linger,
			MaxRecordBytes:   *maxRecord,
			Follow:           *follow,
			Stdin:            cmd.InOrStdin(),
			ProgressInterval: produceProgressEvery,
			Progress: func(s kafkasrc.ProduceStats) {
				fmt.Fprintf(stderr, "produce: %d lines, %d acked, %.1f MB/s\n", s.Lines, s.Acked, mbPerSec(s))
			},
			Logger: slog.Default(),
		}
		stats, err := kafkasrc.ProduceLines(cmd.Context(), cfg, args...)
		if err != nil {
			if stats.Acked > 0 {
				fmt.Fprintf(stderr, "produced %d records (acked) to %s before the error\n", stats.Acked, *topic)
			}
			return err
		}
		fmt.Fprintf(stderr, "produced %d records (acked) to %s in %.1fs\n", stats.Acked, *topic, stats.Elapsed.Seconds())
		return nil
	}
	return cmd
}

func mbPerSec(s kafkasrc.ProduceStats) float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Bytes) / 1e6 / s.Elapsed.Seconds()
}
