package kafkasrc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Source reads exact offset ranges with franz-go, by direct partition reads
// (no consumer group, no rebalancing). It keeps a pool of long-lived readers,
// each its own franz-go client consuming one partition, and reuses a reader
// whose position is where the next range starts, so consecutive batches
// stream without seeking. Readers told to Follow keep fetching while idle,
// so that a continuous query finds new records in memory. All methods are
// safe for concurrent use.
type Source struct {
	cc    clientConfig
	admin *Admin
	log   *slog.Logger

	mu struct {
		sync.Mutex
		closed bool
		idle   map[topicPartition][]*partitionReader
		all    map[*partitionReader]struct{}
	}
	reads   sync.WaitGroup // in-flight ReadRange calls, waited for by Close
	follows sync.WaitGroup // following readers' goroutines, waited for by Close
	// arrived gets a value (without blocking: it holds one) whenever a
	// following reader fetches records.
	arrived chan struct{}

	// For ReadValues: closing ends when Close is called; leaders caches
	// partition leaders.
	closing      context.Context
	close        context.CancelFunc
	decompressor *decompressor
	bufs         sync.Pool // *valueBuf for ReadValues
	leaders      struct {
		sync.Mutex
		m map[topicPartition]leader
	}
}

type topicPartition struct {
	topic     string
	partition int32
}

// partitionReader is a franz-go client consuming one partition. It is used by
// one ReadRange at a time (it is out of the idle pool meanwhile).
type partitionReader struct {
	tp    topicPartition
	log   *slog.Logger
	admin *Admin // to describe the cluster while no record comes
	cl    *kgo.Client
	// next is the offset the client delivers next (the first leftover
	// record's offset or beyond); -1 when unknown.
	next int64
	// leftover holds fetched records at offsets >= next not yet delivered.
	leftover []*kgo.Record
	// logStart is the highest log start offset a fetch reported: records
	// below it not fetched yet were deleted.
	logStart int64

	// While the reader follows (idle, between ReadRange calls), a goroutine
	// appends to leftover: stop ends it and done is closed when it has
	// returned. end is the offset after the last record fetched, for
	// Buffered; leftoverBytes (see recordBytes) bounds what a follower
	// holds, at most followMax.
	stop          context.CancelFunc
	done          chan struct{}
	end           atomic.Int64
	leftoverBytes int
	followMax     int
}

// followMaxBytes bounds the memory of the records a following reader holds
// when Config.FetchAheadBytes is 0; it stops fetching until a ReadRange
// takes them.
const followMaxBytes = 8 << 20

// minFollowBytes is the least a following reader may hold, whatever the
// share of Config.FetchAheadBytes: about one fetch.
const minFollowBytes = 256 << 10

// recordBytes is the memory a fetched record takes: its key and value, its
// kgo.Record and the pointer to it.
func recordBytes(rec *kgo.Record) int {
	return len(rec.Key) + len(rec.Value) + int(unsafe.Sizeof(*rec)) + int(unsafe.Sizeof(rec))
}

// NewSource validates cfg and returns a Source. It does not dial; the first
// call that needs a broker does.
func NewSource(cfg Config) (*Source, error) {
	cc, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	admin, err := newAdmin(cc)
	if err != nil {
		return nil, err
	}
	s := &Source{cc: cc, admin: admin, log: cc.log, arrived: make(chan struct{}, 1), decompressor: newDecompressor()}
	s.closing, s.close = context.WithCancel(context.Background())
	s.leaders.m = make(map[topicPartition]leader)
	s.mu.idle = make(map[topicPartition][]*partitionReader)
	s.mu.all = make(map[*partitionReader]struct{})
	return s, nil
}

// Offsets returns the log start offsets (earliest) and high watermarks
// (latest; the last stable offsets with kafka.isolation.level=read_committed)
// of every partition of the topics. A missing topic is an error wrapping
// ErrUnknownTopic; no broker answering within Config.Timeout is an error
// wrapping ErrUnreachable.
func (s *Source) Offsets(ctx context.Context, topics []string) (earliest, latest Offsets, err error) {
	if s.isClosed() {
		return nil, nil, ErrClosed
	}
	return s.admin.offsets(ctx, topics)
}

// ReadRange delivers every record with r.From <= offset < r.Until, in offset
// order, to fn in slices; fn must not retain a slice after it returns, but may
// keep the records. It stops exactly at r.Until: records fetched beyond are
// kept for a following ReadRange of the same partition starting at r.Until.
// Transaction markers and compaction gaps take offsets without delivering a
// record. Under read_uncommitted (the default, as in Spark) aborted
// transactional records are delivered.
//
// Offsets deleted (retention, DeleteRecords) before the read reached them
// are data loss: with Config.FailOnDataLoss the read fails with an error
// wrapping ErrDataLoss that names them, else it warns and delivers what is
// left of the range. (PlanBatch reports offsets deleted before a range is
// planned.) The reader follows the partition's leader when it
// moves. While no record comes (a partition without a leader, brokers
// down), ReadRange warns as Admin calls do and, after Config.RetryTimeout
// without one, returns an error wrapping ErrUnavailable; r.Until must
// therefore not exceed the latest offset. It returns when ctx ends, with
// ctx's error.
// fn's error is returned as is. ReadRange is safe to call concurrently, also
// for the same partition (each concurrent call uses its own reader).
func (s *Source) ReadRange(ctx context.Context, r Range, fn func(recs []*kgo.Record) error) error {
	if err := r.check(); err != nil || r.From == r.Until {
		return err
	}
	rd, err := s.acquire(r)
	if err != nil {
		return err
	}
	defer s.reads.Done()
	err = rd.read(ctx, r, func(from, to int64, why string) error { return s.dataLost(r, from, to, why) }, fn)
	if err != nil {
		rd.next, rd.leftover, rd.leftoverBytes = -1, nil, 0 // position unknown: reposition next time
		if errors.Is(err, kgo.ErrClientClosed) {
			err = ErrClosed
		}
	}
	s.release(rd)
	return err
}

// acquire takes an idle reader of r's partition, preferring one positioned at
// r.From, or creates one. It registers the call with s.reads.
func (s *Source) acquire(r Range) (*partitionReader, error) {
	tp := topicPartition{r.Topic, r.Partition}
	var stale *kgo.Client // closed after unlocking: Close can take a while
	defer func() {
		if stale != nil {
			stale.Close()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	idle := s.mu.idle[tp]
	pick := len(idle) - 1 // the most recently used, if none is positioned
	for i, rd := range idle {
		if rd.next == r.From {
			pick = i
			break
		}
	}
	var rd *partitionReader
	if pick >= 0 {
		rd = idle[pick]
		s.mu.idle[tp] = append(idle[:pick], idle[pick+1:]...)
		rd.stopFollowing()
		if rd.next == r.From {
			s.reads.Add(1)
			return rd, nil
		}
		s.log.Debug("kafka: repositioning partition reader", "topic", r.Topic, "partition", r.Partition, "from", rd.next, "to", r.From)
		stale = rd.cl
		delete(s.mu.all, rd)
	}
	rd, err := s.newReaderLocked(tp, r.From)
	if err != nil {
		return nil, err
	}
	s.reads.Add(1)
	return rd, nil
}

// newReaderLocked returns a new reader of tp, consuming from offset, and
// registers it in s.mu.all. Creating a client does not dial, so it is cheap
// enough to do under s.mu.
func (s *Source) newReaderLocked(tp topicPartition, offset int64) (*partitionReader, error) {
	opts := append(append(append([]kgo.Opt(nil), s.cc.common...), s.cc.consume...),
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			tp.topic: {tp.partition: kgo.NewOffset().At(offset)},
		}),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, wrapf(ErrInvalidConfig, err, "kafka: creating reader for %s/%d: %v", tp.topic, tp.partition, err)
	}
	rd := &partitionReader{tp: tp, log: s.log, admin: s.admin, cl: cl, next: offset}
	s.mu.all[rd] = struct{}{}
	return rd, nil
}

// Follow makes a reader of each partition in from, positioned at its offset,
// fetch ahead while idle: records produced later are then in memory when a
// batch plans them (Buffered says how far), and reading them costs no
// broker round trip. A continuous query calls it with each batch's end
// offsets. The followers hold at most Config.FetchAheadBytes of records
// together; a ReadRange of the partition from that offset takes one over.
func (s *Source) Follow(from Offsets) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	followMax := followMaxBytes
	if s.cc.fetchAhead > 0 {
		n := 0
		for _, parts := range from {
			n += len(parts)
		}
		followMax = int(max(s.cc.fetchAhead/int64(max(n, 1)), minFollowBytes))
	}
	for topic, parts := range from {
		for p, off := range parts {
			tp := topicPartition{topic, p}
			var rd *partitionReader
			for _, c := range s.mu.idle[tp] {
				if c.next == off {
					rd = c
					break
				}
			}
			if rd == nil {
				var err error
				if rd, err = s.newReaderLocked(tp, off); err != nil {
					return err
				}
				s.mu.idle[tp] = append(s.mu.idle[tp], rd)
			}
			if rd.stop == nil {
				rd.followMax = followMax
				s.startFollowingLocked(rd)
			}
		}
	}
	return nil
}

// startFollowingLocked starts rd's fetch-ahead goroutine; rd is idle.
func (s *Source) startFollowingLocked(rd *partitionReader) {
	end := rd.next
	if n := len(rd.leftover); n > 0 {
		end = rd.leftover[n-1].Offset + 1
	}
	rd.end.Store(end)
	ctx, stop := context.WithCancel(context.Background())
	rd.stop, rd.done = stop, make(chan struct{})
	s.follows.Add(1)
	go func() {
		defer s.follows.Done()
		defer close(rd.done)
		rd.follow(ctx, s.arrived)
	}()
}

// follow appends fetched records to rd.leftover until ctx ends, a fetch
// fails (the next ReadRange meets the error again and reports it) or
// rd.followMax bytes are held.
func (rd *partitionReader) follow(ctx context.Context, arrived chan<- struct{}) {
	for rd.leftoverBytes < rd.followMax {
		fetches := rd.cl.PollFetches(ctx)
		n := len(rd.leftover)
		fetches.EachRecord(func(rec *kgo.Record) { // kept even if ctx ended meanwhile
			rd.leftover = append(rd.leftover, rec)
			rd.leftoverBytes += recordBytes(rec)
		})
		rd.noteLogStart(fetches)
		if len(rd.leftover) > n {
			rd.end.Store(rd.leftover[len(rd.leftover)-1].Offset + 1)
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err := fetches.Err0(); err != nil {
			rd.log.Debug("kafka: partition reader stops fetching ahead", "topic", rd.tp.topic, "partition", rd.tp.partition, "err", err)
			return
		}
	}
}

// stopFollowing ends rd's fetch-ahead goroutine, if any, and waits for it.
func (rd *partitionReader) stopFollowing() {
	if rd.stop == nil {
		return
	}
	rd.stop()
	<-rd.done
	rd.stop, rd.done = nil, nil
}

// Buffered returns, for each partition with a following reader, the offset
// after the last record it fetched ahead: a batch planned up to there reads
// from memory. It never calls a broker.
func (s *Source) Buffered() Offsets {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Offsets{}
	for tp, idle := range s.mu.idle {
		for _, rd := range idle {
			if rd.stop == nil {
				continue
			}
			if end, ok := out.Get(tp.topic, tp.partition); !ok || rd.end.Load() > end {
				out.Set(tp.topic, tp.partition, rd.end.Load())
			}
		}
	}
	return out
}

// Arrived returns a channel that receives a value after a following reader
// fetched records (one value stands for any number of fetches since the
// last receive).
func (s *Source) Arrived() <-chan struct{} { return s.arrived }

// release returns rd to the idle pool, or closes it if the Source closed.
func (s *Source) release(rd *partitionReader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		rd.cl.Close()
		return
	}
	s.mu.idle[rd.tp] = append(s.mu.idle[rd.tp], rd)
}

func (s *Source) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.closed
}

// Close stops every reader, makes in-flight ReadRange and ReadValues calls
// return ErrClosed, waits for them and releases all connections. It is
// idempotent.
func (s *Source) Close() {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	s.mu.closed = true
	for rd := range s.mu.all {
		if rd.stop != nil {
			rd.stop() // an idle follower: nothing else uses it
		}
		rd.cl.Close() // unblocks an in-flight PollFetches
	}
	s.mu.all, s.mu.idle = nil, nil
	s.mu.Unlock()
	s.close() // in-flight ReadValues calls
	s.reads.Wait()
	s.follows.Wait()
	s.admin.Close()
}

// readStall is how long a read may get no record before it counts as
// trouble: it then warns, and gives up after the retry timeout, as calls
// do (see retrier).
const readStall = 5 * time.Second

// read delivers r from rd's leftover and new fetches, calling lost with
// offsets of r deleted before it reached them (see deliver). On success rd
// is positioned at r.Until.
func (rd *partitionReader) read(ctx context.Context, r Range, lost lostFunc, fn func([]*kgo.Record) error) error {
	recs, pos := rd.leftover, r.From
	rd.leftover = nil
	var stalled *retrier // while no record comes
	for {
		rest, next, done, err := deliver(recs, pos, r.Until, rd.logStart, lost, fn)
		if err != nil {
			return err
		}
		if done {
			rd.next, rd.leftover = r.Until, rest
			rd.leftoverBytes = 0
			for _, rec := range rest {
				rd.leftoverBytes += recordBytes(rec)
			}
			return nil
		}
		pos = next
		pctx, cancel := context.WithTimeout(ctx, readStall)
		fetches := rd.cl.PollFetches(pctx)
		timedOut := pctx.Err() != nil
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		if timedOut && fetches.NumRecords() == 0 {
			// franz-go retries failed fetches and follows a moving leader
			// by itself, without reporting either.
			if stalled == nil {
				stalled = rd.admin.retrier("reading "+r.String(), []string{r.Topic})
			}
			if err := stalled.wait(ctx, fmt.Errorf("no record at offset %d for %v", pos, time.Since(stalled.start).Round(time.Second)+readStall)); err != nil {
				return err
			}
			continue
		}
		stalled = nil
		if err := rd.fetchErr(fetches, r, lost); err != nil {
			return err
		}
		rd.noteLogStart(fetches)
		recs = nil
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if recs == nil {
				recs = fp.Records
			} else {
				recs = append(recs, fp.Records...)
			}
		})
	}
}

// noteLogStart raises rd.logStart to the log start offsets fetches report.
func (rd *partitionReader) noteLogStart(fetches kgo.Fetches) {
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		rd.logStart = max(rd.logStart, fp.LogStartOffset)
	})
}

// fetchErr returns the first fatal error in fetches, calling lost with
// the offsets of r that franz-go reports lost (ErrDataLoss).
func (rd *partitionReader) fetchErr(fetches kgo.Fetches, r Range, lost lostFunc) error {
	var first error
	fetches.EachError(func(topic string, p int32, err error) {
		var loss *kgo.ErrDataLoss
		switch {
		case first != nil:
		case errors.As(err, &loss):
			// The log was cut below what was consumed (an unclean leader
			// election): the records in between may have been replaced.
			from, to := max(min(loss.ConsumedTo, loss.ResetTo), r.From), min(max(loss.ConsumedTo, loss.ResetTo), r.Until)
			if from < to {
				first = lost(from, to, fmt.Sprintf("were lost by the brokers (%v)", err))
			}
		case errors.Is(err, kgo.ErrClientClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			first = err
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			first = wrapf(ErrUnknownTopic, err, "kafka: reading %s: topic %q or partition %d does not exist (was the topic deleted?)", r, topic, p)
		default:
			first = fmt.Errorf("kafka: reading %s: %w", r, err)
		}
	})
	return first
}

// deliver hands fn the records of recs in [pos, until), skipping control
// records and records below pos. Offsets missing before a record, or at
// the end of recs, that lie below logStart were deleted before they were
// fetched: it calls lost with them (clipped to until) before it goes on,
// and returns lost's error. (Offsets missing at or above logStart are
// compaction gaps or aborted transactions' records.) It returns the records
// at or beyond until, the next expected offset, and whether the range is
// complete.
func deliver(recs []*kgo.Record, pos, until, logStart int64, lost lostFunc, fn func([]*kgo.Record) error) (rest []*kgo.Record, next int64, done bool, err error) {
	run := 0 // start of the run of deliverable records
	flush := func(end int) error {
		if end > run {
			return fn(recs[run:end])
		}
		return nil
	}
	// deleted reports offsets from pos up to to deleted if pos lies below
	// logStart.
	deleted := func(to int64) error {
		if pos >= logStart || pos >= to {
			return nil
		}
		return lost(pos, min(to, logStart, until), deletedBeforeRead)
	}
	for i, rec := range recs {
		if rec.Offset > pos && pos < logStart {
			if err := flush(i); err != nil {
				return nil, pos, false, err
			}
			run = i
			if err := deleted(rec.Offset); err != nil {
				return nil, pos, false, err
			}
		}
		switch {
		case rec.Offset >= until:
			if err := flush(i); err != nil {
				return nil, pos, false, err
			}
			return recs[i:], until, true, nil
		case rec.Offset < pos || rec.Attrs.IsControl():
			if err := flush(i); err != nil {
				return nil, pos, false, err
			}
			run = i + 1
			pos = max(pos, rec.Offset+1)
		default:
			pos = rec.Offset + 1
		}
	}
	if err := flush(len(recs)); err != nil {
		return nil, pos, false, err
	}
	if err := deleted(until); err != nil {
		return nil, pos, false, err
	}
	pos = max(pos, min(logStart, until))
	return nil, pos, pos >= until, nil
}

// lostFunc is called with offsets [from, to) of a range being read that
// cannot be read, and why (after "offsets [from, to) of the range"); its
// error ends the read.
type lostFunc func(from, to int64, why string) error

// deletedBeforeRead says why offsets deleted by retention or DeleteRecords
// cannot be read.
const deletedBeforeRead = "were deleted (retention or DeleteRecords) before they were read"

// dataLost handles offsets [from, to) of r's partition that cannot be
// read, for why: with Config.FailOnDataLoss it returns an error wrapping
// ErrDataLoss naming them and how to go on, else it logs a warning and
// returns nil, and the read goes on with what is left of r.
func (s *Source) dataLost(r Range, from, to int64, why string) error {
	what := fmt.Sprintf("%s/%d: offsets [%d, %d) of the range %s %s", r.Topic, r.Partition, from, to, r, why)
	if s.cc.failOnDataLoss {
		return dataLossError(what)
	}
	s.log.Warn(dataLossWarning(what))
	return nil
}
