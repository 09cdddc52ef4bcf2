package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// newProducer returns a client tuned for loading: large batches, a short
// linger, lz4 as a log shipper would use.
func newProducer(brokers []string, linger time.Duration) (*kgo.Client, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ProducerLinger(linger),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(100_000),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka producer for %v: %w", brokers, err)
	}
	return cl, nil
}

// produceAll produces n records made by next into topic, showing a progress
// bar on stderr, and waits until every record is acknowledged.
func produceAll(ctx context.Context, brokers []string, topic string, n int, next func(i int) []byte) error {
	cl, err := newProducer(brokers, 5*time.Millisecond)
	if err != nil {
		return err
	}
	defer cl.Close()
	var (
		acked    atomic.Int64
		firstErr error
		errOnce  sync.Once
	)
	bar := newProgressBar("loading "+topic, int64(n))
	defer bar.finish()
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		// The value is copied: the generator reuses its buffer.
		rec := &kgo.Record{Topic: topic, Value: append([]byte(nil), next(i)...)}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				errOnce.Do(func() { firstErr = err })
			}
			bar.set(acked.Add(1))
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush records to %s: %w", topic, err)
	}
	if firstErr != nil {
		return fmt.Errorf("produce to %s: %w (is the cluster healthy? see the broker logs)", topic, firstErr)
	}
	return ctx.Err()
}

// ceilingCmd is the hidden subcommand the suite re-executes itself with to
// measure the ceiling: a plain franz-go consumer that reads every record of
// a topic from the start and discards it.
const ceilingCmd = "ceiling-consumer"

// runCeiling is the body of ceilingCmd: args are brokers (comma separated),
// topic and the number of records to read. With 0 records it reads until
// stopped and echoes the records that carry a latency marker to stdout: the
// produce-to-consume latency of Kafka alone, the floor of every system's.
func runCeiling(ctx context.Context, args []string) error {
	if len(args) != 3 {
		return errors.New("usage: suite " + ceilingCmd + " BROKERS TOPIC RECORDS")
	}
	var want int64
	if _, err := fmt.Sscan(args[2], &want); err != nil {
		return fmt.Errorf("records %q: %w", args[2], err)
	}
	tail := want == 0
	out := bufio.NewWriter(os.Stdout)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(args[0], ",")...),
		kgo.ConsumeTopics(args[1]),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	var got, valueBytes int64
	for tail || got < want {
		fs := cl.PollFetches(ctx)
		if tail && ctx.Err() != nil {
			return nil
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("consume %s after %d records: %w", args[1], got, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			valueBytes += int64(len(r.Value))
			if tail && bytes.Contains(r.Value, []byte(markerPrefix)) {
				out.Write(r.Value)
				out.WriteByte('\n')
			}
		})
		if err := out.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "ceiling: read %d records, %d value bytes\n", got, valueBytes)
	return nil
}

// progressBar draws "label [=====>    ] 42% 1234567/3000000 512k/s" on
// stderr, at most twice a second (every 10% when stderr is not a terminal).
type progressBar struct {
	label string
	total int64
	start time.Time
	tty   bool
	mu    struct {
		sync.Mutex
		last     time.Time
		lastTens int64
	}
}

func newProgressBar(label string, total int64) *progressBar {
	fi, err := os.Stderr.Stat()
	return &progressBar{label: label, total: max(total, 1), start: time.Now(),
		tty: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

// set reports progress; safe for concurrent use.
func (p *progressBar) set(done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	tens := done * 10 / p.total
	if p.tty && now.Sub(p.mu.last) < 500*time.Millisecond && done < p.total {
		return
	}
	if !p.tty && tens == p.mu.lastTens {
		return
	}
	p.mu.last, p.mu.lastTens = now, tens
	p.drawLocked(done, now)
}

func (p *progressBar) drawLocked(done int64, now time.Time) {
	const width = 30
	fill := int(done * width / p.total)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-3)
	end := "\n"
	if p.tty {
		end = "\r"
	}
	fmt.Fprintf(os.Stderr, "%s [%s] %3d%% %d/%d %s/s%s", p.label, bar, done*100/p.total, done, p.total, humanCount(rate), end)
}

// finish ends the bar's line.
func (p *progressBar) finish() {
	if p.tty {
		fmt.Fprintln(os.Stderr)
	}
}

// humanCount formats 1234567 as "1.23M".
func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
