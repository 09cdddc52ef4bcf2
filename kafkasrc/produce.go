package kafkasrc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
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
	// DefaultMaxBufferedRecords is ProduceConfig.MaxBufferedRecords's default.
	DefaultMaxBufferedRecords = 50_000
	// DefaultMaxBufferedBytes is ProduceConfig.MaxBufferedBytes's default
	// (64 MiB).
	DefaultMaxBufferedBytes = 64 << 20
	// DefaultStallWarning is ProduceConfig.StallWarning's default.
	DefaultStallWarning = 10 * time.Second
	// batchOverhead bounds the bytes a record batch of one record adds to
	// its value (batch header and record framing, about 100).
	batchOverhead = 512
)

// followPoll is how often follow mode looks for new data, rotation and
// truncation.
const followPoll = 200 * time.Millisecond

// readChunk is how much of an input is read at a time.
const readChunk = 256 << 10

// tailKeep is how many of the bytes read last follow mode keeps, to check
// that the file still holds them where they were read.
const tailKeep = 4 << 10

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
	// MaxBufferedRecords and MaxBufferedBytes bound the records read but not
	// yet acknowledged (bytes count values); defaults
	// DefaultMaxBufferedRecords (50,000) and DefaultMaxBufferedBytes
	// (64 MiB), which must hold a record of MaxRecordBytes. When either is
	// reached, reading the input waits until the brokers acknowledge
	// records: nothing is dropped, and a pipe into stdin backs up.
	MaxBufferedRecords int
	MaxBufferedBytes   int64
	// StallWarning is how long records may wait without any
	// acknowledgement before a warning is logged (how long, how much is
	// buffered, the last connection error), and then the interval between
	// warnings; default DefaultStallWarning (10s).
	StallWarning time.Duration
	// FromOffset starts reading the one input at this byte offset, which
	// must be the start of a line (0 or just after a newline): the offset a
	// stopped run reported as its InputStats.Resume. The lines before it are
	// read to count them, not produced.
	FromOffset int64
	// Follow keeps reading files as they grow, like tail -F; see
	// ProduceLines for rotation and truncation. Stdin is read until EOF
	// either way.
	Follow bool
	// Progress, if set, is called about every ProgressInterval from a
	// goroutine owned by ProduceLines, never after it returns.
	Progress func(ProduceStats)
	// ProgressInterval defaults to 1s.
	ProgressInterval time.Duration
	// Timeout bounds reaching the brokers at start, and the wait for the
	// last acknowledgements once ctx ends; default DefaultTimeout (10s).
	Timeout time.Duration
	// Stdin is read for the input "-"; default os.Stdin. Reading stdin
	// cannot be interrupted: ctx is noticed at the next line or EOF.
	Stdin io.Reader
	// Logger receives warnings (brokers not acknowledging, lines dropped at
	// a truncation) and rotation notices; default slog.Default().
	Logger *slog.Logger

	// dial, if set, replaces the dialer (tests cut the brokers off with it).
	dial func(ctx context.Context, network, host string) (net.Conn, error)
}

// ProduceStats counts a ProduceLines run.
type ProduceStats struct {
	Lines   int64         // lines read and handed to the producer
	Acked   int64         // records acknowledged by the brokers
	Bytes   int64         // value bytes of the lines read
	Elapsed time.Duration // since ProduceLines started
	// BufferedRecords and BufferedBytes are waiting for acknowledgement.
	BufferedRecords, BufferedBytes int64
	// Inputs holds one entry per input, in the order given.
	Inputs []InputStats
}

// InputStats reports how far one input was produced.
type InputStats struct {
	Name  string // the path, or "stdin"
	Lines int64  // lines read and handed to the producer
	Acked int64  // of them, acknowledged by the brokers
	// Done reports that the input was read to its end and every line
	// acknowledged (never in follow mode, except for stdin).
	Done bool
	// Resume is the first line not acknowledged: every line read before it
	// is in the topic. Reading the input again from Resume.Offset (see
	// ProduceConfig.FromOffset) sends no acknowledged line twice, except
	// the AckedAfter ones.
	Resume Position
	// AckedAfter counts the lines after Resume that were acknowledged
	// anyway (they went to other partitions). The Lines-Acked lines not
	// acknowledged may or may not be in the topic when the brokers did not
	// answer in time; when every line read is acknowledged, Resume is where
	// reading stopped and nothing after it was sent.
	AckedAfter int64
	// Rotated reports that Resume is in a file that follow mode has since
	// left behind (rotated away or truncated), not in the file at Name.
	Rotated bool
}

// Position is a line of an input.
type Position struct {
	Line   int64 // 1-based; 0 when unknown (reading had not reached FromOffset)
	Offset int64 // byte offset of the line's start
}

// ProduceLines reads the inputs (file paths, "-" for stdin) and produces one
// record per line to cfg.Topic, with a null key and the line as value: the
// "\n" and a "\r" before it are stripped (as kafka-console-producer does, so
// CRLF and LF files give the same records), any other byte is kept, and a
// last line without a newline is produced too. Empty lines become empty
// (non-null) values. Lines are produced as they are read, so stdin has low
// latency. The producer is idempotent with acks=all, so each partition
// holds its records in the order they were read, once; the lines of one
// input spread over partitions (sticky partitioning).
//
// ProduceLines returns when every record is acknowledged, or with the first
// error (the counts so far are still returned). A missing topic is an error
// wrapping ErrUnknownTopic; unreachable brokers at the start wrap
// ErrUnreachable. While the brokers acknowledge nothing, records are
// buffered up to MaxBufferedRecords and MaxBufferedBytes, reading waits
// when that is full, and a warning is logged every StallWarning.
//
// When ctx ends, ProduceLines stops reading at a line boundary, waits up to
// Timeout for the acknowledgements of the lines read, and reports each
// input's Resume position. If every line read is acknowledged, what is in
// the topic is exactly the lines before Resume; ProduceLines then returns
// nil in follow mode (ctx ending is how it stops) and otherwise an error
// wrapping ctx's error if an input was not read to its end. If the wait
// ends first, the error wraps ErrNotAcked.
//
// In follow mode files are read as they grow, like tail -F. A file renamed
// or removed and recreated (rotation) is read to its end, its last line
// produced even without a newline, and the new file read from its start. A
// file truncated in place (logrotate's copytruncate) is noticed by its size
// or by the bytes read last no longer being where they were read, even when
// it grew past its old size between two looks: the lines not yet read are
// taken from the copy next to it (a file whose name starts with the file's,
// uncompressed, holding those bytes at the same place) if there is one, and
// the file is read again from its start. A line is produced only once its
// newline is read, except at a rotation: an unfinished line is dropped (with
// a warning) when the file is truncated under it, and not produced when ctx
// ends (Resume points at it).
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
	cl      *kgo.Client
	started time.Time
	lines   atomic.Int64
	acked   atomic.Int64
	bytes   atomic.Int64
	failed  atomic.Pointer[error] // first produce error
	// inflight counts records handed to the client whose promise has not
	// run yet.
	inflight sync.WaitGroup
	conns    connWatch
	inputs   []*inputTracker // one per input
	// produceCtx bounds buffering and acknowledgements: it ends Timeout
	// after ProduceLines' ctx.
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
	if cfg.MaxRecordBytes < 0 || cfg.BatchMaxBytes < 0 || cfg.MaxBufferedRecords < 0 || cfg.MaxBufferedBytes < 0 {
		return nil, errorf(ErrInvalidConfig, "kafka: max record bytes %d, batch max bytes %d, max buffered records %d and max buffered bytes %d must not be negative",
			cfg.MaxRecordBytes, cfg.BatchMaxBytes, cfg.MaxBufferedRecords, cfg.MaxBufferedBytes)
	}
	if cfg.FromOffset < 0 || cfg.FromOffset > 0 && len(inputs) != 1 {
		return nil, errorf(ErrInvalidConfig, "kafka: a start offset (%d) must be 0 or more and applies to one input, not %d (give one file)", cfg.FromOffset, len(inputs))
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
	if cfg.MaxBufferedRecords == 0 {
		cfg.MaxBufferedRecords = DefaultMaxBufferedRecords
	}
	if cfg.MaxBufferedBytes == 0 {
		cfg.MaxBufferedBytes = max(DefaultMaxBufferedBytes, int64(cfg.MaxRecordBytes))
	}
	if cfg.MaxBufferedBytes < int64(cfg.MaxRecordBytes) {
		return nil, errorf(ErrInvalidConfig, "kafka: max buffered bytes %d cannot hold a record of max record bytes %d (raise the first or lower the second)",
			cfg.MaxBufferedBytes, cfg.MaxRecordBytes)
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}
	if cfg.StallWarning <= 0 {
		cfg.StallWarning = DefaultStallWarning
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
	for _, in := range inputs {
		p.inputs = append(p.inputs, newInputTracker(in, cfg.FromOffset))
	}
	// franz-go's default producer is idempotent with acks=all: sequence
	// numbers keep each partition in read order across retries, with up to
	// 5 requests in flight per broker, which Resume relies on.
	opts := append(slices.Clone(cc.common),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerLinger(max(cfg.Linger, 0)),
		kgo.ProducerBatchMaxBytes(int32(batchMax)),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		kgo.MaxBufferedBytes(int(cfg.MaxBufferedBytes)),
		kgo.BrokerMaxWriteBytes(int32(max(batchMax+1<<20, 100<<20))),
		kgo.WithHooks(&p.conns),
	)
	if cfg.dial != nil {
		opts = append(opts, kgo.Dialer(cfg.dial))
	}
	if p.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, wrapf(ErrInvalidConfig, err, "kafka: creating producer: %v", err)
	}
	return p, nil
}

func (p *producer) stats() ProduceStats {
	s := ProduceStats{
		Lines: p.lines.Load(), Acked: p.acked.Load(), Bytes: p.bytes.Load(), Elapsed: time.Since(p.started),
		BufferedRecords: p.cl.BufferedProduceRecords(), BufferedBytes: p.cl.BufferedProduceBytes(),
	}
	for _, in := range p.inputs {
		s.Inputs = append(s.Inputs, in.stats())
	}
	return s
}

func (p *producer) run(ctx context.Context, inputs []string) (ProduceStats, error) {
	p.started = time.Now()
	admin := adminFor(p.cl, p.cc) // not closed: it shares p.cl
	if _, err := admin.metadata(ctx, p.cfg.Topic); err != nil {
		p.cl.Close()
		return p.stats(), err
	}

	// Records already read are produced and acknowledged for up to Timeout
	// after ctx ends.
	var stopGrace func()
	p.produceCtx, stopGrace = withGrace(ctx, p.cfg.Timeout)
	defer stopGrace()

	stopMonitor := p.startMonitor()
	readErr := p.readAll(ctx, inputs)
	flushErr := p.cl.Flush(p.produceCtx)
	p.cl.Close() // fails what the brokers did not acknowledge in time
	p.inflight.Wait()
	stopMonitor()
	stats := p.stats()

	stopped := ctx.Err() != nil && errors.Is(readErr, ctx.Err())
	switch perr := p.failed.Load(); {
	case perr != nil:
		return stats, *perr // the first produce error explains later ones
	case readErr != nil && !stopped:
		return stats, readErr
	case stats.Acked < stats.Lines:
		return stats, wrapf(ErrNotAcked, flushErr, "kafka: %d of %d records were not acknowledged by the brokers at %s within %v of the stop (%s); the records after the last one acknowledged may or may not be in topic %q",
			stats.Lines-stats.Acked, stats.Lines, admin.brokerList(), p.cfg.Timeout, p.conns.describe(), p.cfg.Topic)
	case stopped && !p.cfg.Follow:
		return stats, fmt.Errorf("kafka: stopped before the end of the input: %w", readErr)
	}
	return stats, nil
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

// startMonitor calls cfg.Progress every ProgressInterval and warns while
// the brokers acknowledge nothing, until the returned func is called; that
// func waits for the goroutine to exit.
func (p *producer) startMonitor() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var progress <-chan time.Time
		if p.cfg.Progress != nil {
			t := time.NewTicker(p.cfg.ProgressInterval)
			defer t.Stop()
			progress = t.C
		}
		look := time.NewTicker(max(p.cfg.StallWarning/10, time.Millisecond))
		defer look.Stop()
		var st stall
		for {
			select {
			case <-done:
				return
			case <-progress:
				p.cfg.Progress(p.stats())
			case now := <-look.C:
				p.checkStall(&st, now)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// stall tracks a time without acknowledgements while records wait.
type stall struct {
	acked  int64     // acknowledgements at the last look
	since  time.Time // first look that saw no progress; zero while records are acknowledged
	warned time.Time // last warning of this stall
}

// checkStall looks at the producer's progress at now and logs a warning
// when records have waited StallWarning without any acknowledgement, and
// again every StallWarning, and a notice when acknowledgements resume.
func (p *producer) checkStall(st *stall, now time.Time) {
	acked, buffered := p.acked.Load(), p.cl.BufferedProduceRecords()
	if acked != st.acked || buffered == 0 {
		if !st.warned.IsZero() {
			p.cfg.Logger.Info(fmt.Sprintf("kafka: the brokers acknowledge records again, after %v without any acknowledgement", now.Sub(st.since).Round(time.Second)))
		}
		*st = stall{acked: acked}
		return
	}
	if st.since.IsZero() {
		st.since = now
		return
	}
	waited := now.Sub(st.since)
	if waited < p.cfg.StallWarning || now.Sub(st.warned) < p.cfg.StallWarning {
		return
	}
	st.warned = now
	bytes := p.cl.BufferedProduceBytes()
	state := "reading continues until it is full, then waits"
	if buffered >= int64(p.cfg.MaxBufferedRecords) || bytes+int64(p.cfg.MaxRecordBytes) > p.cfg.MaxBufferedBytes {
		state = "the buffer is full: reading the input waits for the brokers"
	}
	p.cfg.Logger.Warn(fmt.Sprintf("kafka: no acknowledgement from the brokers at %s for %v (%s); %d records (%d bytes) buffered, limits %d records and %d bytes: %s, nothing is dropped",
		strings.Join(p.cc.brokers, ","), waited.Round(time.Second), p.conns.describe(), buffered, bytes,
		p.cfg.MaxBufferedRecords, p.cfg.MaxBufferedBytes, state),
		"buffered_records", buffered, "buffered_bytes", bytes, "waited", waited.Round(time.Second))
}

// connWatch is a franz-go hook that keeps the outcome of the last
// connection attempt to a broker.
type connWatch struct{ last atomic.Pointer[error] }

func (w *connWatch) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		w.last.Store(nil)
		return
	}
	w.last.Store(&err)
}

// describe says how the last connection attempt went.
func (w *connWatch) describe() string {
	if err := w.last.Load(); err != nil {
		return fmt.Sprintf("last connection error: %v", *err)
	}
	return "the last connection attempt succeeded"
}

// readAll reads the inputs: one after another, or all at once in follow mode.
func (p *producer) readAll(ctx context.Context, inputs []string) error {
	if !p.cfg.Follow {
		for i, in := range inputs {
			if err := p.readInput(ctx, p.inputs[i], in); err != nil {
				return err
			}
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, in := range inputs {
		g.Go(func() error {
			if in == "-" {
				return p.readInput(gctx, p.inputs[i], in)
			}
			return p.follow(gctx, p.inputs[i], in)
		})
	}
	return g.Wait()
}

// readInput produces every line of one input until EOF.
func (p *producer) readInput(ctx context.Context, in *inputTracker, path string) error {
	r := p.cfg.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("kafka: reading input: %w", err)
		}
		defer f.Close()
		r = f
	}
	ls := p.newSplitter(in)
	if err := ls.skip(r, p.cfg.FromOffset); err != nil {
		return err
	}
	if _, err := ls.readFrom(ctx, r); err != nil {
		return err
	}
	if err := ls.finish(); err != nil {
		return err
	}
	in.setEOF()
	return nil
}

// follow produces the lines of path as it grows, across rotation and
// truncation, until ctx ends.
func (p *producer) follow(ctx context.Context, in *inputTracker, path string) (err error) {
	fl := &follower{p: p, path: path, ls: p.newSplitter(in), buf: make([]byte, readChunk), start: p.cfg.FromOffset}
	defer func() {
		fl.close()
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			err = nil // ctx ending is follow mode's normal stop
		}
	}()
	for {
		if err := fl.poll(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil // an unfinished last line stays unsent
		case <-time.After(followPoll):
		}
	}
}

// follower reads one file as it grows. Its file offset pos and the bytes
// before it, tail, tell a file that only grew from one that was truncated
// and written again.
type follower struct {
	p     *producer
	path  string
	ls    *lineSplitter
	f     *os.File // nil while path does not exist
	pos   int64    // bytes of f fed to ls
	tail  []byte   // the last tailKeep bytes before pos
	buf   []byte
	check []byte // holdsTail's buffer
	start int64  // offset to start the first file at
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
	}
}

// poll opens path if needed, finishes a file rotated away and reads what
// was appended.
func (fl *follower) poll(ctx context.Context) error {
	if fl.f == nil {
		f, err := os.Open(fl.path)
		if errors.Is(err, os.ErrNotExist) {
			return nil // wait for it to (re)appear
		} else if err != nil {
			return fmt.Errorf("kafka: following input: %w", err)
		}
		fl.f, fl.pos, fl.tail = f, 0, fl.tail[:0]
		if fl.start > 0 {
			if err := fl.ls.skip(io.NewSectionReader(f, 0, fl.start), fl.start); err != nil {
				return err
			}
			fl.tail = make([]byte, min(fl.start, tailKeep))
			if _, err := f.ReadAt(fl.tail, fl.start-int64(len(fl.tail))); err != nil {
				return fmt.Errorf("kafka: reading %s: %w", fl.path, err)
			}
			fl.pos, fl.start = fl.start, 0
		}
	}
	cur, err := fl.f.Stat()
	if err != nil {
		return fmt.Errorf("kafka: following %s: %w", fl.path, err)
	}
	if now, err := os.Stat(fl.path); err == nil && !os.SameFile(cur, now) {
		// Rotated: the old file is complete once read to its end.
		if err := fl.readNew(ctx); err != nil {
			return err
		}
		if err := fl.ls.finish(); err != nil {
			return err
		}
		fl.p.cfg.Logger.Info("kafka: input rotated, reading the new file", "path", fl.path)
		fl.f.Close()
		fl.f = nil
		fl.ls.newFile()
		return fl.poll(ctx)
	}
	return fl.readNew(ctx)
}

// readNew feeds what was appended to the file since pos. Each piece read is
// fed only if the file still holds the bytes read before it at the same
// place; a file that does not, or is shorter than pos, was truncated.
func (fl *follower) readNew(ctx context.Context) error {
	for {
		n, err := fl.f.ReadAt(fl.buf, fl.pos)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("kafka: reading %s: %w", fl.path, err)
		}
		if n == 0 {
			st, err := fl.f.Stat()
			if err != nil {
				return fmt.Errorf("kafka: following %s: %w", fl.path, err)
			}
			if st.Size() >= fl.pos {
				return nil
			}
		} else if ok, err := fl.holdsTail(fl.f); err != nil {
			return err
		} else if ok {
			if err := fl.feed(ctx, fl.buf[:n]); err != nil {
				return err
			}
			continue
		}
		if err := fl.truncated(ctx); err != nil {
			return err
		}
	}
}

// feed hands chunk, read at pos, to the splitter.
func (fl *follower) feed(ctx context.Context, chunk []byte) error {
	if err := fl.ls.feed(ctx, chunk); err != nil {
		return err
	}
	fl.pos += int64(len(chunk))
	if len(chunk) >= tailKeep {
		fl.tail = append(fl.tail[:0], chunk[len(chunk)-tailKeep:]...)
	} else {
		fl.tail = append(fl.tail, chunk...)
		fl.tail = fl.tail[:copy(fl.tail, fl.tail[max(len(fl.tail)-tailKeep, 0):])]
	}
	return nil
}

// holdsTail reports whether f holds fl.tail just before fl.pos.
func (fl *follower) holdsTail(f *os.File) (bool, error) {
	if len(fl.tail) == 0 {
		return true, nil
	}
	if fl.check == nil {
		fl.check = make([]byte, tailKeep)
	}
	got := fl.check[:len(fl.tail)]
	n, err := f.ReadAt(got, fl.pos-int64(len(fl.tail)))
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("kafka: reading %s: %w", f.Name(), err)
	}
	return bytes.Equal(got[:n], fl.tail), nil
}

// truncated reads the lines not yet read from a copy of the file, if one
// is found, drops an unfinished line and starts the file again from 0.
func (fl *follower) truncated(ctx context.Context) error {
	lines := fl.ls.line
	cp, err := fl.findCopy()
	if err != nil {
		return err
	}
	from := "no copy of it next to it holds the bytes read last: lines written after the last read, if any, are lost"
	if cp != nil {
		_, err := fl.ls.readFrom(ctx, io.NewSectionReader(cp, fl.pos, 1<<62))
		cp.Close()
		if err != nil {
			return err
		}
		from = fmt.Sprintf("the %d lines not read yet were read from its copy %s", fl.ls.line-lines, cp.Name())
	}
	if n := fl.ls.dropPending(); n > 0 {
		fl.p.cfg.Logger.Warn(fmt.Sprintf("kafka: %s was truncated under an unfinished line (%d bytes at offset %d, no newline): the line is dropped, its end was lost with the truncation",
			fl.path, n, fl.ls.off), "path", fl.path)
	}
	fl.p.cfg.Logger.Info(fmt.Sprintf("kafka: input truncated (%s), reading it from the start", from), "path", fl.path)
	fl.pos, fl.tail = 0, fl.tail[:0]
	fl.ls.newFile()
	return nil
}

// compressedExts are the suffixes of rotated copies follow mode cannot read.
var compressedExts = []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".zip"}

// findCopy returns the newest file next to path, other than path's file,
// whose name starts with path's and which holds the bytes read last at the
// same place, opened; or nil.
func (fl *follower) findCopy() (*os.File, error) {
	if len(fl.tail) == 0 {
		return nil, nil
	}
	dir, base := filepath.Dir(fl.path), filepath.Base(fl.path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("kafka: looking for a copy of truncated %s: %w", fl.path, err)
	}
	cur, err := fl.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("kafka: following %s: %w", fl.path, err)
	}
	var best *os.File
	var bestMod time.Time
	for _, e := range entries {
		name := e.Name()
		if name == base || !strings.HasPrefix(name, base) || slices.ContainsFunc(compressedExts, func(ext string) bool { return strings.HasSuffix(name, ext) }) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Size() < fl.pos || os.SameFile(info, cur) || !info.ModTime().After(bestMod) {
			continue
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue // rotated away meanwhile, or unreadable: not the copy
		}
		if ok, err := fl.holdsTail(f); err != nil || !ok {
			f.Close()
			continue
		}
		if best != nil {
			best.Close()
		}
		best, bestMod = f, info.ModTime()
	}
	return best, nil
}

// produce hands one record to the client; its value must not be modified
// after.
func (p *producer) produce(r *kgo.Record) {
	p.lines.Add(1)
	p.bytes.Add(int64(len(r.Value)))
	p.inflight.Add(1)
	p.cl.Produce(p.produceCtx, r, p.promise)
}

func (p *producer) promise(r *kgo.Record, err error) {
	defer p.inflight.Done()
	m := r.Context.(*recordMeta)
	m.in.acked(m.seq, err == nil)
	if err == nil {
		p.acked.Add(1)
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return // the wait after a stop ended: reported as not acknowledged
	}
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
		err = wrapf(ErrLineTooLong, err, "kafka: the brokers rejected a batch with a %d-byte record for topic %q as too large (raise the topic's max.message.bytes to --max-record-bytes + 512, or lower --max-record-bytes)",
			len(r.Value), p.cfg.Topic)
	} else {
		err = fmt.Errorf("kafka: producing to %q on %s: %w", p.cfg.Topic, strings.Join(p.cc.brokers, ","), err)
	}
	p.failed.CompareAndSwap(nil, &err)
}

// inputTracker follows which lines of one input were read and which the
// brokers acknowledged, to name the first line not acknowledged. Lines are
// numbered in read order by seq; the reader calls read, the promises call
// acked, concurrently.
type inputTracker struct {
	name string
	mu   struct {
		sync.Mutex
		file  int32 // files read so far (follow mode starts again at rotation and truncation), less one
		lines int64
		acks  int64
		eof   bool
		// window holds the lines from the first not acknowledged on, in
		// read order; base is the seq of window[0], first the index of the
		// first not acknowledged.
		window []lineAck
		base   int64
		first  int
		next   Position // the line after the last read, in file
	}
}

type lineAck struct {
	pos   Position
	file  int32
	acked bool
}

func newInputTracker(path string, from int64) *inputTracker {
	t := &inputTracker{name: path}
	if path == "-" {
		t.name = "stdin"
	}
	t.mu.next = Position{Line: 1, Offset: from}
	if from > 0 {
		t.mu.next.Line = 0 // known once the lines before from are counted
	}
	return t
}

// read records a line read at pos, the next line starting at next, and
// returns its seq.
func (t *inputTracker) read(pos, next Position) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.lines++
	t.mu.window = append(t.mu.window, lineAck{pos: pos, file: t.mu.file})
	t.mu.next = next
	return t.mu.base + int64(len(t.mu.window)) - 1
}

// acked records the outcome of line seq.
func (t *inputTracker) acked(seq int64, ok bool) {
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.acks++
	w := t.mu.window
	w[seq-t.mu.base].acked = true
	first := t.mu.first
	for first < len(w) && w[first].acked {
		first++
	}
	switch {
	case first == len(w):
		t.mu.window, t.mu.base, first = w[:0], t.mu.base+int64(len(w)), 0
	case first >= 1024 && first >= len(w)/2:
		n := copy(w, w[first:])
		t.mu.window, t.mu.base, first = w[:n], t.mu.base+int64(first), 0
	}
	t.mu.first = first
}

// moveTo records that reading continues at next, in a new file when
// newFile is set.
func (t *inputTracker) moveTo(next Position, newFile bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if newFile {
		t.mu.file++
	}
	t.mu.next = next
}

func (t *inputTracker) setEOF() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.eof = true
}

func (t *inputTracker) stats() InputStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := InputStats{Name: t.name, Lines: t.mu.lines, Acked: t.mu.acks, Resume: t.mu.next}
	if w := t.mu.window[t.mu.first:]; len(w) > 0 {
		s.Resume, s.Rotated = w[0].pos, w[0].file != t.mu.file
		for _, l := range w[1:] {
			if l.acked {
				s.AckedAfter++
			}
		}
	}
	s.Done = t.mu.eof && s.Acked == s.Lines
	return s
}

// recordMeta is a record's Context: the produce context, plus which line
// of which input the record holds.
type recordMeta struct {
	context.Context
	in  *inputTracker
	seq int64
}

// slot holds a record and its Context; they are allocated by the thousand.
type slot struct {
	rec  kgo.Record
	meta recordMeta
}

// lineSplitter cuts one input into lines and produces them. Values are
// copied into shared slabs, so a record costs no allocation of its own.
type lineSplitter struct {
	p       *producer
	in      *inputTracker
	line    int64  // lines seen in the current file
	off     int64  // offset in the current file of pending's start
	pending []byte // start of a line whose newline has not been read yet
	slab    []byte // free space for values
	slots   []slot // free records
}

const slabSize = 1 << 20

func (p *producer) newSplitter(in *inputTracker) *lineSplitter {
	return &lineSplitter{p: p, in: in}
}

// newFile starts reading a new file from its start.
func (ls *lineSplitter) newFile() {
	ls.line, ls.off, ls.pending = 0, 0, ls.pending[:0]
	ls.in.moveTo(Position{Line: 1}, true)
}

// skip reads and counts the lines of r before offset to, which must be the
// start of a line.
func (ls *lineSplitter) skip(r io.Reader, to int64) error {
	if to == 0 {
		return nil
	}
	buf := make([]byte, readChunk)
	var n, lines int64
	var last byte
	for n < to {
		k, err := r.Read(buf[:min(int64(len(buf)), to-n)])
		lines += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if k > 0 {
			last = buf[k-1]
		}
		n += int64(k)
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("kafka: reading %s: %w", ls.in.name, err)
		}
	}
	switch {
	case n < to:
		return errorf(ErrInvalidConfig, "kafka: start offset %d is past the end of %s (%d bytes)", to, ls.in.name, n)
	case last != '\n':
		return errorf(ErrInvalidConfig, "kafka: start offset %d of %s is not the start of a line (byte %d is not a newline); give an offset a stopped run reported", to, ls.in.name, to-1)
	}
	ls.line, ls.off = lines, to
	ls.in.moveTo(Position{Line: lines + 1, Offset: to}, false)
	return nil
}

// readFrom feeds r to the end and returns the bytes read.
func (ls *lineSplitter) readFrom(ctx context.Context, r io.Reader) (int64, error) {
	buf := make([]byte, readChunk)
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if ferr := ls.feed(ctx, buf[:n]); ferr != nil {
			return total, ferr
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		} else if err != nil {
			return total, fmt.Errorf("kafka: reading %s: %w", ls.in.name, err)
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

func (ls *lineSplitter) tooLong() error {
	return errorf(ErrLineTooLong, "kafka: line %d of %s is longer than %d bytes (raise the limit with --max-record-bytes or ProduceConfig.MaxRecordBytes; lines are never truncated or split)",
		ls.line+1, ls.in.name, ls.p.cfg.MaxRecordBytes)
}

// feed produces the complete lines of chunk, which continues what was fed
// before; an unfinished last line stays pending. It stops between two lines
// when ctx ends.
func (ls *lineSplitter) feed(ctx context.Context, chunk []byte) error {
	limit := ls.p.cfg.MaxRecordBytes
	for len(chunk) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			// +1: a trailing '\r' may still be stripped.
			if len(ls.pending)+len(chunk) > limit+1 {
				return ls.tooLong()
			}
			ls.pending = append(ls.pending, chunk...)
			return nil
		}
		line := chunk[:i]
		if len(ls.pending) > 0 {
			ls.pending = append(ls.pending, line...)
			line = ls.pending
		}
		size := len(line) + 1
		if k := len(line); k > 0 && line[k-1] == '\r' {
			line = line[:k-1]
		}
		if len(line) > limit {
			return ls.tooLong()
		}
		if err := ls.emit(line, size); err != nil {
			return err
		}
		chunk = chunk[i+1:]
	}
	return nil
}

// finish produces a pending last line that has no newline.
func (ls *lineSplitter) finish() error {
	if len(ls.pending) == 0 {
		return nil
	}
	if len(ls.pending) > ls.p.cfg.MaxRecordBytes {
		return ls.tooLong()
	}
	return ls.emit(ls.pending, len(ls.pending))
}

// dropPending drops an unfinished line and returns its length.
func (ls *lineSplitter) dropPending() int {
	n := len(ls.pending)
	ls.pending = ls.pending[:0]
	return n
}

// emit produces line, which took size bytes of the input, and clears
// pending.
func (ls *lineSplitter) emit(line []byte, size int) error {
	if perr := ls.p.failed.Load(); perr != nil {
		return *perr
	}
	if len(line) > cap(ls.slab)-len(ls.slab) {
		ls.slab = make([]byte, 0, max(slabSize, len(line)))
	}
	start := len(ls.slab)
	ls.slab = append(ls.slab, line...)
	if len(ls.slots) == 0 {
		ls.slots = make([]slot, 1024)
	}
	s := &ls.slots[0]
	ls.slots = ls.slots[1:]

	ls.line++
	pos := Position{Line: ls.line, Offset: ls.off}
	ls.off += int64(size)
	ls.pending = ls.pending[:0]
	s.meta = recordMeta{Context: ls.p.produceCtx, in: ls.in, seq: ls.in.read(pos, Position{Line: ls.line + 1, Offset: ls.off})}
	s.rec.Value = ls.slab[start:len(ls.slab):len(ls.slab)]
	s.rec.Context = &s.meta
	ls.p.produce(&s.rec)
	return nil
}
