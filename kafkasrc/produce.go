package kafkasrc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// Produce defaults.
const (
	// DefaultLinger is ProduceConfig.Linger's default.
	DefaultLinger = 5 * time.Millisecond
	// DefaultBatchMaxBytes is ProduceConfig.BatchMaxBytes's default (1 MiB),
	// within Kafka's default message.max.bytes (1 MiB + 12 bytes).
	DefaultBatchMaxBytes = 1 << 20
	// DefaultMaxRecordBytes is ProduceConfig.MaxRecordBytes's default: 1 MiB
	// less the batch overhead, the longest line a default broker accepts.
	DefaultMaxRecordBytes = DefaultBatchMaxBytes - batchOverhead
	// batchOverhead bounds the bytes a record batch of one record adds to
	// its value (batch header and record framing, about 100).
	batchOverhead = 512
)

// followPoll is how often follow mode looks for new data and rotation.
const followPoll = 200 * time.Millisecond

// Compressions lists the accepted ProduceConfig.Compression values.
var Compressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// ProduceConfig configures ProduceLines. Only Brokers and Topic are required.
type ProduceConfig struct {
	// Brokers are the bootstrap brokers as host:port.
	Brokers []string
	// Topic receives the records; it must exist.
	Topic string
	// Compression is one of Compressions; default "none", like Kafka's
	// compression.type (compression costs CPU on both ends and gains little
	// on loopback; lz4 is the cheapest over a real network).
	Compression string
	// Linger is how long a partition waits for more records before sending a
	// batch; default DefaultLinger (5ms). Negative means 0.
	Linger time.Duration
	// BatchMaxBytes caps one record batch; default DefaultBatchMaxBytes
	// (1 MiB). It is raised to fit a record of MaxRecordBytes if needed, and
	// must not exceed the topic's max.message.bytes.
	BatchMaxBytes int32
	// MaxRecordBytes is the longest line accepted, in bytes without the line
	// terminator; default DefaultMaxRecordBytes (1 MiB - 512). A longer line
	// stops ProduceLines with an error wrapping ErrLineTooLong that names the
	// file and line: lines are never truncated or split. Raising it raises
	// BatchMaxBytes to MaxRecordBytes+512, which the topic's max.message.bytes
	// (and the brokers' message.max.bytes) must allow.
	MaxRecordBytes int
	// Follow keeps reading files as they grow, like tail -F: a file that is
	// renamed or removed and recreated (rotation) is finished and the new
	// one read from its start; a truncated file is read again from its
	// start. Follow mode runs until ctx ends, which is then a normal stop:
	// ProduceLines waits up to Timeout for the last acknowledgements and
	// returns a nil error. Stdin is read until EOF either way.
	Follow bool
	// Progress, if set, is called about every ProgressInterval from a
	// goroutine owned by ProduceLines, never after it returns.
	Progress func(ProduceStats)
	// ProgressInterval defaults to 1s.
	ProgressInterval time.Duration
	// Timeout bounds reaching the brokers at start and, in follow mode, the
	// final acknowledgements; default DefaultTimeout (10s).
	Timeout time.Duration
	// Stdin is read for the input "-"; default os.Stdin. Reading stdin
	// cannot be interrupted: ctx is noticed at the next line or EOF.
	Stdin io.Reader
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// ProduceStats counts a ProduceLines run.
type ProduceStats struct {
	Lines   int64         // lines read and handed to the producer
	Acked   int64         // records acknowledged by the brokers
	Bytes   int64         // value bytes of the lines read
	Elapsed time.Duration // since ProduceLines started
}

// ProduceLines reads the inputs (file paths, "-" for stdin) and produces one
// record per line to cfg.Topic, with a null key and the line as value: the
// "\n" and a "\r" before it are stripped (as kafka-console-producer does, so
// CRLF and LF files give the same records), any other byte is kept, and a
// last line without a newline is produced too. Empty lines become empty
// (non-null) values. Lines are produced as they are read, so stdin has low
// latency. The producer is idempotent with acks=all; records of one input
// may spread over partitions (sticky partitioning).
//
// ProduceLines returns when every record is acknowledged, or with the first
// error (the counts so far are still returned). A missing topic is an error
// wrapping ErrUnknownTopic; unreachable brokers wrap ErrUnreachable.
func ProduceLines(ctx context.Context, cfg ProduceConfig, inputs ...string) (ProduceStats, error) {
	p, err := newProducer(cfg, inputs)
	if err != nil {
		return ProduceStats{}, err
	}
	return p.run(ctx, inputs)
}

type producer struct {
	cfg     ProduceConfig
	cc      clientConfig
	started time.Time
	lines   atomic.Int64
	acked   atomic.Int64
	bytes   atomic.Int64
	failed  atomic.Pointer[error] // first produce error
	cl      *kgo.Client
	// produceCtx bounds buffering and acknowledgements: ctx, or in follow
	// mode ctx plus a grace period of Timeout.
	produceCtx context.Context
}

func parseCompression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, errorf(ErrInvalidConfig, "kafka: unknown compression %q (want none, gzip, snappy, lz4 or zstd)", name)
}

func newProducer(cfg ProduceConfig, inputs []string) (*producer, error) {
	if len(inputs) == 0 {
		return nil, errorf(ErrInvalidConfig, `kafka: no input to produce (give file names, or "-" for stdin)`)
	}
	if err := checkTopicName(cfg.Topic); err != nil {
		return nil, err
	}
	codec, err := parseCompression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	if cfg.MaxRecordBytes < 0 || cfg.BatchMaxBytes < 0 {
		return nil, errorf(ErrInvalidConfig, "kafka: max record bytes %d and batch max bytes %d must not be negative", cfg.MaxRecordBytes, cfg.BatchMaxBytes)
	}
	if cfg.MaxRecordBytes == 0 {
		cfg.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if cfg.BatchMaxBytes == 0 {
		cfg.BatchMaxBytes = DefaultBatchMaxBytes
	}
	batchMax := max(int64(cfg.BatchMaxBytes), int64(cfg.MaxRecordBytes)+batchOverhead)
	if batchMax > 1<<30 {
		return nil, errorf(ErrInvalidConfig, "kafka: max record bytes %d is too large (at most 1 GiB)", cfg.MaxRecordBytes)
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}
	if cfg.Stdin == nil {
		cfg.Stdin = os.Stdin
	}
	cc, err := Config{Brokers: cfg.Brokers, Timeout: cfg.Timeout, Logger: cfg.Logger}.resolve()
	if err != nil {
		return nil, err
	}
	cfg.Timeout, cfg.Logger = cc.timeout, cc.log
	p := &producer{cfg: cfg, cc: cc}
	opts := append(slices.Clone(cc.common),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerLinger(max(cfg.Linger, 0)),
		kgo.ProducerBatchMaxBytes(int32(batchMax)),
		kgo.MaxBufferedBytes(64<<20+int(batchMax)),
		kgo.BrokerMaxWriteBytes(int32(max(batchMax+1<<20, 100<<20))),
	)
	if p.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, wrapf(ErrInvalidConfig, err, "kafka: creating producer: %v", err)
	}
	return p, nil
}

func (p *producer) stats() ProduceStats {
	return ProduceStats{Lines: p.lines.Load(), Acked: p.acked.Load(), Bytes: p.bytes.Load(), Elapsed: time.Since(p.started)}
}

func (p *producer) run(ctx context.Context, inputs []string) (ProduceStats, error) {
	p.started = time.Now()
	defer p.cl.Close()
	admin := adminFor(p.cl, p.cc) // not closed: it shares p.cl
	if _, err := admin.metadata(ctx, p.cfg.Topic); err != nil {
		return p.stats(), err
	}

	p.produceCtx = ctx
	if p.cfg.Follow {
		// ctx ending is follow mode's normal stop: records already read are
		// still produced and acknowledged, for up to Timeout.
		var stop func()
		p.produceCtx, stop = withGrace(ctx, p.cfg.Timeout)
		defer stop()
	}

	stopProgress := p.startProgress()
	err := p.readAll(ctx, inputs)
	if ferr := p.cl.Flush(p.produceCtx); err == nil && ferr != nil {
		err = fmt.Errorf("kafka: waiting for acknowledgements from %s: %w", admin.brokerList(), ferr)
	}
	stopProgress()
	if perr := p.failed.Load(); perr != nil {
		err = *perr // the first produce error explains later ones
	}
	return p.stats(), err
}

// withGrace returns a context that ends grace after ctx ends, and a func
// that ends it at once and waits for its timer goroutine.
func withGrace(ctx context.Context, grace time.Duration) (context.Context, func()) {
	graceCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		select {
		case <-done:
		case <-time.After(grace):
		}
	})
	return graceCtx, func() {
		close(done)
		wg.Wait()
	}
}

// startProgress calls cfg.Progress periodically until the returned func is
// called; that func waits for the goroutine to exit.
func (p *producer) startProgress() (stop func()) {
	if p.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(p.cfg.ProgressInterval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				p.cfg.Progress(p.stats())
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// readAll reads the inputs: one after another, or all at once in follow mode.
func (p *producer) readAll(ctx context.Context, inputs []string) error {
	if !p.cfg.Follow {
		for _, in := range inputs {
			if err := p.readInput(ctx, in); err != nil {
				return err
			}
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, in := range inputs {
		g.Go(func() error {
			if in == "-" {
				return p.readInput(gctx, in)
			}
			return p.follow(gctx, in)
		})
	}
	return g.Wait()
}

// readInput produces every line of one input until EOF.
func (p *producer) readInput(ctx context.Context, in string) error {
	var r io.Reader = p.cfg.Stdin
	name := "stdin"
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return fmt.Errorf("kafka: reading input: %w", err)
		}
		defer f.Close()
		r, name = f, in
	}
	ls := p.newSplitter(name, r)
	if err := ls.drain(ctx); err != nil {
		return err
	}
	return ls.finish()
}

// follow produces the lines of path as it grows, across rotation and
// truncation, until ctx ends.
func (p *producer) follow(ctx context.Context, path string) (err error) {
	defer func() {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			err = nil // stopped mid-file: ctx ending is the normal stop
		}
	}()
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var ls *lineSplitter
	for {
		if f == nil {
			var err error
			switch f, err = os.Open(path); {
			case errors.Is(err, os.ErrNotExist):
				f = nil // wait for it to (re)appear
			case err != nil:
				return fmt.Errorf("kafka: following input: %w", err)
			case ls == nil:
				ls = p.newSplitter(path, f)
			default:
				ls.reset(f)
			}
		}
		if f != nil {
			if err := ls.drain(ctx); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			if ls == nil {
				return nil
			}
			return ls.finish()
		case <-time.After(followPoll):
		}
		if f == nil {
			continue
		}
		cur, err1 := f.Stat()
		now, err2 := os.Stat(path)
		pos, err3 := f.Seek(0, io.SeekCurrent) // drain emptied the buffer
		switch {
		case err1 != nil || err3 != nil:
			return fmt.Errorf("kafka: following %s: %w", path, errors.Join(err1, err3))
		case err2 == nil && !os.SameFile(cur, now): // rotated: finish the old file
			if err := ls.drain(ctx); err != nil {
				return err
			}
			if err := ls.finish(); err != nil {
				return err
			}
			p.cfg.Logger.Info("kafka: input rotated, reading the new file", "path", path)
			f.Close()
			f = nil
		case cur.Size() < pos: // truncated in place
			if err := ls.finish(); err != nil {
				return err
			}
			p.cfg.Logger.Info("kafka: input truncated, reading it from the start", "path", path)
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("kafka: following %s: %w", path, err)
			}
			ls.reset(f)
		}
	}
}

// produce hands one line to the client; value must not be modified after.
func (p *producer) produce(value []byte) error {
	if perr := p.failed.Load(); perr != nil {
		return *perr
	}
	p.lines.Add(1)
	p.bytes.Add(int64(len(value)))
	p.cl.Produce(p.produceCtx, &kgo.Record{Value: value}, p.promise)
	return nil
}

func (p *producer) promise(r *kgo.Record, err error) {
	if err == nil {
		p.acked.Add(1)
		return
	}
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
		err = wrapf(ErrLineTooLong, err, "kafka: the brokers rejected a batch with a %d-byte record for topic %q as too large (raise the topic's max.message.bytes to --max-record-bytes + 512, or lower --max-record-bytes)",
			len(r.Value), p.cfg.Topic)
	} else {
		err = fmt.Errorf("kafka: producing to %q on %s: %w", p.cfg.Topic, strings.Join(p.cc.brokers, ","), err)
	}
	p.failed.CompareAndSwap(nil, &err)
}

// lineSplitter cuts one input into lines and produces them. Values are
// copied into shared slabs, so a record costs no allocation of its own.
type lineSplitter struct {
	p       *producer
	name    string
	br      *bufio.Reader
	line    int64  // lines seen
	pending []byte // start of a line whose newline has not been read yet
	slab    []byte // free space for values
}

const slabSize = 1 << 20

func (p *producer) newSplitter(name string, r io.Reader) *lineSplitter {
	return &lineSplitter{p: p, name: name, br: bufio.NewReaderSize(r, 256<<10)}
}

func (ls *lineSplitter) reset(r io.Reader) { ls.br.Reset(r) }

func (ls *lineSplitter) tooLong() error {
	return errorf(ErrLineTooLong, "kafka: line %d of %s is longer than %d bytes (raise the limit with --max-record-bytes or ProduceConfig.MaxRecordBytes; lines are never truncated or split)",
		ls.line+1, ls.name, ls.p.cfg.MaxRecordBytes)
}

// drain produces the complete lines up to EOF; an unfinished last line stays
// pending.
func (ls *lineSplitter) drain(ctx context.Context) error {
	limit := ls.p.cfg.MaxRecordBytes
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk, err := ls.br.ReadSlice('\n')
		if n := len(chunk); n > 0 && chunk[n-1] == '\n' {
			line := chunk[:n-1]
			if len(ls.pending) > 0 {
				ls.pending = append(ls.pending, line...)
				line = ls.pending
			}
			if k := len(line); k > 0 && line[k-1] == '\r' {
				line = line[:k-1]
			}
			if len(line) > limit {
				return ls.tooLong()
			}
			if perr := ls.emit(line); perr != nil {
				return perr
			}
			ls.pending = ls.pending[:0]
		} else if n > 0 {
			// +1: a trailing '\r' may still be stripped.
			if len(ls.pending)+n > limit+1 {
				return ls.tooLong()
			}
			ls.pending = append(ls.pending, chunk...)
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil
		default:
			return fmt.Errorf("kafka: reading %s: %w", ls.name, err)
		}
	}
}

// finish produces a pending last line that has no newline.
func (ls *lineSplitter) finish() error {
	if len(ls.pending) == 0 {
		return nil
	}
	if len(ls.pending) > ls.p.cfg.MaxRecordBytes {
		return ls.tooLong()
	}
	err := ls.emit(ls.pending)
	ls.pending = ls.pending[:0]
	return err
}

func (ls *lineSplitter) emit(line []byte) error {
	ls.line++
	if len(line) > cap(ls.slab)-len(ls.slab) {
		ls.slab = make([]byte, 0, max(slabSize, len(line)))
	}
	start := len(ls.slab)
	ls.slab = append(ls.slab, line...)
	return ls.p.produce(ls.slab[start:len(ls.slab):len(ls.slab)])
}
