package kafkasrc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestSourceOffsetsAndConsecutiveBatches(t *testing.T) {
	ctx := testCtx(t)
	c := newFake(t, "logs", 3)
	addrs := c.ListenAddrs()
	for p := range int32(3) {
		produceN(t, addrs, "logs", p, 0, 40*int(p+1))
	}
	s := newTestSource(t, addrs, nil)
	earliest, latest, err := s.Offsets(ctx, []string{"logs"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Offsets{"logs": {0: 40, 1: 80, 2: 120}}); !equalOffsets(latest, want) {
		t.Fatalf("latest = %v, want %v", latest, want)
	}
	if want := (Offsets{"logs": {0: 0, 1: 0, 2: 0}}); !equalOffsets(earliest, want) {
		t.Fatalf("earliest = %v, want %v", earliest, want)
	}

	// Batches capped at 50 offsets, with more data arriving in between:
	// every record is read exactly once, in order.
	in := PlanInput{Starting: StartingOffsets{Earliest: true}, MaxOffsetsPerTrigger: 50, FailOnDataLoss: true}
	got := drainBatches(t, ctx, s, "logs", in, func(batch int) {
		if batch == 3 {
			produceN(t, addrs, "logs", 0, 40, 25)
		}
	})
	for p, n := range map[int32]int{0: 65, 1: 80, 2: 120} {
		if want := values(fmt.Sprintf("p%d-", p), 0, n); !slices.Equal(got[p], want) {
			t.Errorf("partition %d: got %d records %q..., want %d", p, len(got[p]), head(got[p]), n)
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

func TestReadRangeNonContiguousAndConcurrent(t *testing.T) {
	ctx := testCtx(t)
	c := newFake(t, "logs", 2)
	produceN(t, c.ListenAddrs(), "logs", 0, 0, 500)
	produceN(t, c.ListenAddrs(), "logs", 1, 0, 500)
	s := newTestSource(t, c.ListenAddrs(), map[string]string{"max.partition.fetch.bytes": "1024"})

	for _, r := range []Range{{"logs", 0, 300, 310}, {"logs", 0, 10, 20}, {"logs", 0, 20, 21}, {"logs", 0, 499, 500}, {"logs", 0, 0, 500}, {"logs", 0, 5, 5}} {
		offs, vals, err := readAll(t, ctx, s, r)
		if err != nil {
			t.Fatal(err)
		}
		if want := values("p0-", int(r.From), int(r.Until)); !slices.Equal(vals, want) || int64(len(offs)) != r.Len() {
			t.Fatalf("range %s: got %q, want %q", r, head(vals), head(want))
		}
		if direct, err := readDirect(ctx, s, r); err != nil || !slices.Equal(direct, vals) {
			t.Fatalf("range %s: ReadValues got %q, %v; want %q", r, head(direct), err, head(vals))
		}
	}

	// Concurrent reads of both partitions and of the same partition.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			r := Range{Topic: "logs", Partition: int32(i % 2), From: int64(i * 50), Until: int64(i*50 + 100)}
			_, vals, err := readAll(t, ctx, s, r)
			if err != nil {
				t.Error(err)
				return
			}
			if want := values(fmt.Sprintf("p%d-", r.Partition), int(r.From), int(r.Until)); !slices.Equal(vals, want) {
				t.Errorf("range %s: got %q", r, head(vals))
			}
		})
	}
	wg.Wait()
}

func TestReadRangeCancelAndFnError(t *testing.T) {
	c := newFake(t, "logs", 1)
	produceN(t, c.ListenAddrs(), "logs", 0, 0, 100)
	s := newTestSource(t, c.ListenAddrs(), nil)

	// Until beyond the log: ReadRange delivers what exists, then waits for ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	offs, _, err := readAll(t, ctx, s, Range{"logs", 0, 0, 200})
	if !errors.Is(err, context.DeadlineExceeded) || len(offs) != 100 {
		t.Fatalf("got %d records, err %v; want 100 and context.DeadlineExceeded", len(offs), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ReadRange took %v to notice ctx", d)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	if vals, err := readDirect(ctx, s, Range{"logs", 0, 0, 200}); !errors.Is(err, context.DeadlineExceeded) || len(vals) != 100 {
		t.Fatalf("ReadValues got %d values, err %v; want 100 and context.DeadlineExceeded", len(vals), err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("ReadValues took %v to notice ctx", d)
	}

	boom := errors.New("boom")
	err = s.ReadRange(testCtx(t), Range{"logs", 0, 0, 50}, func([]*kgo.Record) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want fn's error", err)
	}
	if err := s.ReadValues(testCtx(t), Range{"logs", 0, 0, 50}, func([][]byte, func()) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("ReadValues: err = %v, want fn's error", err)
	}
	// The reader recovers at any position.
	if _, vals, err := readAll(t, testCtx(t), s, Range{"logs", 0, 40, 60}); err != nil || !slices.Equal(vals, values("p0-", 40, 60)) {
		t.Fatalf("after errors: %q, %v", head(vals), err)
	}

	if err := s.ReadRange(testCtx(t), Range{"logs", 0, 5, 4}, nil); !errors.Is(err, ErrInvalidOffsets) {
		t.Fatalf("inverted range: err = %v, want ErrInvalidOffsets", err)
	}
	if err := s.ReadValues(testCtx(t), Range{"logs", 0, 5, 4}, nil); !errors.Is(err, ErrInvalidOffsets) {
		t.Fatalf("ReadValues, inverted range: err = %v, want ErrInvalidOffsets", err)
	}
	s.Close()
	if err := s.ReadRange(testCtx(t), Range{"logs", 0, 0, 1}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: err = %v, want ErrClosed", err)
	}
	if err := s.ReadValues(testCtx(t), Range{"logs", 0, 0, 1}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadValues after Close: err = %v, want ErrClosed", err)
	}
}

func TestReadRangeCloseUnblocksRead(t *testing.T) {
	c := newFake(t, "logs", 1)
	s := newTestSource(t, c.ListenAddrs(), nil)
	done := make(chan error, 2)
	go func() {
		done <- s.ReadRange(context.Background(), Range{"logs", 0, 0, 1}, func([]*kgo.Record) error { return nil })
	}()
	go func() {
		done <- s.ReadValues(context.Background(), Range{"logs", 0, 0, 1}, func([][]byte, func()) error { return nil })
	}()
	time.Sleep(200 * time.Millisecond) // let the reads block waiting for data
	s.Close()
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("err = %v, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not unblock ReadRange and ReadValues")
		}
	}
}

// TestReadRangeTransactions checks that commit and abort markers end ranges
// (ReadRange must not wait for a record at the marker's offset) and that
// aborted records are delivered under read_uncommitted and skipped under
// read_committed.
func TestReadRangeTransactions(t *testing.T) {
	ctx := testCtx(t)
	c := newFake(t, "logs", 1)
	addrs := c.ListenAddrs()
	txn := func(first, n int, commit kgo.TransactionEndTry) {
		produceTxn(t, ctx, addrs, "logs", first, n, commit)
	}
	txn(0, 5, kgo.TryCommit) // offsets 0-4, commit marker at 5
	txn(5, 3, kgo.TryAbort)  // offsets 6-8, abort marker at 9

	for _, tc := range []struct {
		isolation string
		want      []string
	}{
		{"read_uncommitted", append(values("p0-", 0, 5), values("p0-", 5, 8)...)},
		{"read_committed", values("p0-", 0, 5)},
	} {
		s := newTestSource(t, addrs, map[string]string{"isolation.level": tc.isolation})
		_, latest, err := s.Offsets(ctx, []string{"logs"})
		if err != nil {
			t.Fatal(err)
		}
		if latest["logs"][0] != 10 {
			t.Fatalf("%s: latest = %v, want 10", tc.isolation, latest)
		}
		got := readValues(t, ctx, s, tc.isolation, 10*time.Second, Range{"logs", 0, 0, 6}, Range{"logs", 0, 6, 10})
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.isolation, got, tc.want)
		}
		var direct []string
		for _, r := range []Range{{"logs", 0, 0, 6}, {"logs", 0, 6, 10}} {
			vals, err := readDirect(ctx, s, r)
			if err != nil {
				t.Fatalf("%s: ReadValues %s: %v", tc.isolation, r, err)
			}
			direct = append(direct, vals...)
		}
		if !slices.Equal(direct, tc.want) {
			t.Errorf("%s: ReadValues got %q, want %q", tc.isolation, direct, tc.want)
		}
	}
}

// TestDeliverDeleted: offsets missing before a record, or at the end of
// the records, are data loss when they lie below the log start (deleted
// before they were fetched), and a compaction gap when not.
func TestDeliverDeleted(t *testing.T) {
	recsAt := func(offsets ...int64) []*kgo.Record {
		var recs []*kgo.Record
		for _, o := range offsets {
			recs = append(recs, &kgo.Record{Offset: o})
		}
		return recs
	}
	for _, c := range []struct {
		name             string
		recs             []*kgo.Record
		pos, until, logS int64
		want             string // the delivered offsets and the lost ranges
		next             int64
	}{
		{"whole", recsAt(10, 11, 12), 10, 13, 0, "10 11 12", 13},
		{"compaction gap", recsAt(10, 14, 15), 10, 16, 5, "10 14 15", 16},
		{"fetched before the deletion", recsAt(10, 11, 60, 61), 10, 62, 60, "10 11 lost[12,60) 60 61", 62},
		{"deleted at the start", recsAt(60, 61), 10, 70, 60, "lost[10,60) 60 61", 62},
		{"deleted past until", nil, 10, 50, 60, "lost[10,50)", 50},
		{"deleted, the rest to come", nil, 10, 70, 60, "lost[10,60)", 60},
	} {
		var got []string
		lost := func(from, to int64, why string) error {
			got = append(got, fmt.Sprintf("lost[%d,%d)", from, to))
			return nil
		}
		_, next, _, err := deliver(c.recs, c.pos, c.until, c.logS, lost, func(recs []*kgo.Record) error {
			for _, r := range recs {
				got = append(got, fmt.Sprint(r.Offset))
			}
			return nil
		})
		if err != nil || strings.Join(got, " ") != c.want || next != c.next {
			t.Errorf("%s: delivered %q, next %d, %v; want %q, next %d", c.name, strings.Join(got, " "), next, err, c.want, c.next)
		}
	}
}

func TestReadRangeDeletedRecords(t *testing.T) {
	ctx := testCtx(t)
	c := newFake(t, "logs", 1)
	produceN(t, c.ListenAddrs(), "logs", 0, 0, 100)
	if err := c.DeleteRecords("logs", 0, 60); err != nil {
		t.Fatal(err)
	}
	s := newTestSource(t, c.ListenAddrs(), nil)
	earliest, latest, err := s.Offsets(ctx, []string{"logs"})
	if err != nil {
		t.Fatal(err)
	}
	if earliest["logs"][0] != 60 || latest["logs"][0] != 100 {
		t.Fatalf("offsets = %v %v, want 60 and 100", earliest, latest)
	}
	in := PlanInput{Prev: Offsets{"logs": {0: 10}}, Earliest: earliest, Latest: latest, FailOnDataLoss: true}
	if _, err := PlanBatch(in); !errors.Is(err, ErrDataLoss) || !strings.Contains(err.Error(), "logs/0: offsets [10, 60) were deleted") {
		t.Fatalf("PlanBatch error = %v, want data loss of [10, 60)", err)
	}
	in.FailOnDataLoss = false
	plan, err := PlanBatch(in)
	if err != nil || len(plan.Warnings) != 1 || rangesString(plan.Ranges) != "logs/0[60,100)" {
		t.Fatalf("plan = %+v, %v", plan, err)
	}
	// A range that starts in deleted data reads what is left of it, with
	// failOnDataLoss=false; with true, the read fails naming the offsets
	// (before, it delivered what was left either way).
	if _, vals, err := readAll(t, ctx, s, Range{"logs", 0, 10, 70}); err != nil || !slices.Equal(vals, values("p0-", 60, 70)) {
		t.Fatalf("got %q, %v; want p0-60..p0-69", vals, err)
	}
	strict, err := NewSource(Config{Brokers: c.ListenAddrs(), Timeout: 5 * time.Second, FailOnDataLoss: true})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	const lost = "kafka: data loss: logs/0: offsets [10, 60) of the range logs/0[10,70) were deleted (retention or DeleteRecords) before they were read; the query stops here"
	if _, vals, err := readAll(t, ctx, strict, Range{"logs", 0, 10, 70}); !errors.Is(err, ErrDataLoss) || !strings.Contains(err.Error(), lost) {
		t.Fatalf("ReadRange with FailOnDataLoss got %d values, %v; want %q", len(vals), err, lost)
	}
	if vals, err := readDirect(ctx, strict, Range{"logs", 0, 10, 70}); !errors.Is(err, ErrDataLoss) || !strings.Contains(err.Error(), lost) {
		t.Fatalf("ReadValues with FailOnDataLoss got %d values, %v; want %q", len(vals), err, lost)
	}
	if _, vals, err := readAll(t, ctx, strict, Range{"logs", 0, 60, 70}); err != nil || !slices.Equal(vals, values("p0-", 60, 70)) {
		t.Fatalf("ReadRange with FailOnDataLoss of offsets not deleted got %q, %v", vals, err)
	}
	if vals, err := readDirect(ctx, s, Range{"logs", 0, 10, 70}); err != nil || !slices.Equal(vals, values("p0-", 60, 70)) {
		t.Fatalf("ReadValues got %q, %v; want p0-60..p0-69", vals, err)
	}
	// A range wholly deleted reads nothing and returns.
	if vals, err := readDirect(ctx, s, Range{"logs", 0, 10, 50}); err != nil || len(vals) != 0 {
		t.Fatalf("ReadValues of deleted offsets got %q, %v; want nothing", vals, err)
	}
}

func TestOffsetsErrors(t *testing.T) {
	ctx := testCtx(t)
	c := newFake(t, "logs", 1)
	s := newTestSource(t, c.ListenAddrs(), nil)
	addr := c.ListenAddrs()[0]
	_, _, err := s.Offsets(ctx, []string{"logs", "nope"})
	want := fmt.Sprintf(`kafka: topic "nope" does not exist on %s (create it: gostream topics create nope --partitions 3 --brokers %s)`, addr, addr)
	if !errors.Is(err, ErrUnknownTopic) || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}

	dead := freeAddr(t)
	s2, err := NewSource(Config{Brokers: []string{dead}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	start := time.Now()
	_, _, err = s2.Offsets(ctx, []string{"logs"})
	took := time.Since(start)
	want = fmt.Sprintf("kafka: no broker reachable at %s after 1s (is Kafka running? check --brokers)", dead)
	if !errors.Is(err, ErrUnreachable) || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if took > 3*time.Second {
		t.Fatalf("unreachable error took %v, want about the 1s timeout", took)
	}

	// A "broker" that accepts connections but never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns sync.WaitGroup
	conns.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	})
	defer conns.Wait()
	defer ln.Close()
	s3, err := NewSource(Config{Brokers: []string{ln.Addr().String()}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	start = time.Now()
	_, _, err = s3.Offsets(ctx, []string{"logs"})
	took = time.Since(start)
	want = fmt.Sprintf("kafka: no broker reachable at %s after 1s (is Kafka running? check --brokers)", ln.Addr())
	if !errors.Is(err, ErrUnreachable) || err.Error() != want || took > 3*time.Second {
		t.Fatalf("silent broker: err = %v after %v\nwant %s within about 1s", err, took, want)
	}
}

func TestConfigOptions(t *testing.T) {
	tests := []struct {
		cfg    Config
		errHas string
	}{
		{cfg: Config{Brokers: []string{"localhost:9092"}, Options: map[string]string{"fetch.max.bytes": "1048576", "isolation.level": "read_committed", "client.id": "x", "request.timeout.ms": "30000"}}},
		{cfg: Config{Options: map[string]string{"bootstrap.servers": "a:1, b:2"}}},
		{cfg: Config{}, errHas: "no brokers given"},
		{cfg: Config{Brokers: []string{"localhost"}}, errHas: `broker "localhost" is not host:port`},
		{cfg: Config{Brokers: []string{"a:1"}, Options: map[string]string{"bootstrap.servers": "b:2"}}, errHas: "brokers are set twice"},
		{cfg: Config{Brokers: []string{"a:1"}, Options: map[string]string{"fetch.max.bytez": "1"}}, errHas: "unknown option kafka.fetch.max.bytez (supported: kafka.bootstrap.servers, kafka.client.id"},
		{cfg: Config{Brokers: []string{"a:1"}, Options: map[string]string{"fetch.max.bytes": "-1"}}, errHas: `kafka.fetch.max.bytes="-1" is invalid: want bytes > 0`},
		{cfg: Config{Brokers: []string{"a:1"}, Options: map[string]string{"isolation.level": "serializable"}}, errHas: "want read_uncommitted or read_committed"},
		{cfg: Config{Brokers: []string{"a:1"}, Options: map[string]string{"auto.offset.reset": "earliest"}}, errHas: "set the startingOffsets source option instead"},
	}
	for _, tt := range tests {
		s, err := NewSource(tt.cfg)
		if tt.errHas == "" {
			if err != nil {
				t.Errorf("NewSource(%+v): %v", tt.cfg, err)
			} else {
				s.Close()
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("NewSource(%+v) error = %v, want ErrInvalidConfig containing %q", tt.cfg, err, tt.errHas)
		}
	}
}

// TestFollowFetchesAhead checks that following readers fetch records
// produced after a batch, report them in Buffered, signal Arrived, and hand
// them to the next ReadRange exactly once, in order.
func TestFollowFetchesAhead(t *testing.T) {
	c := newFake(t, "logs", 2)
	testFollow(t, c.ListenAddrs(), "logs")
}

// testFollow runs TestFollowFetchesAhead's checks on a topic of 2 empty
// partitions.
func testFollow(t *testing.T, addrs []string, topic string) {
	ctx := testCtx(t)
	produceN(t, addrs, topic, 0, 0, 20)
	s := newTestSource(t, addrs, nil)
	if _, _, err := readAll(t, ctx, s, Range{topic, 0, 0, 20}); err != nil {
		t.Fatal(err)
	}
	if got := s.Buffered(); len(got) != 0 {
		t.Fatalf("Buffered before Follow = %v, want nothing", got)
	}
	// Partition 0's reader is at 20; partition 1 has none yet.
	if err := s.Follow(Offsets{topic: {0: 20, 1: 0}}); err != nil {
		t.Fatal(err)
	}
	produceN(t, addrs, topic, 0, 20, 7)
	produceN(t, addrs, topic, 1, 0, 3)

	want := Offsets{topic: {0: 27, 1: 3}}
	deadline := time.Now().Add(10 * time.Second)
	for got := s.Buffered(); !equalOffsets(got, want); got = s.Buffered() {
		if time.Now().After(deadline) {
			t.Fatalf("Buffered = %v, want %v within 10s", got, want)
		}
		select {
		case <-s.Arrived():
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, tc := range []struct {
		r    Range
		want []string
	}{
		{Range{topic, 0, 20, 25}, values("p0-", 20, 25)},
		{Range{topic, 0, 25, 27}, values("p0-", 25, 27)},
		{Range{topic, 1, 0, 3}, values("p1-", 0, 3)},
	} {
		_, got, err := readAll(t, ctx, s, tc.r)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("range %s = %q, want %q", tc.r, got, tc.want)
		}
	}
	// The readers were taken over: they follow again only when told.
	if got := s.Buffered(); len(got) != 0 {
		t.Errorf("Buffered after reading = %v, want nothing", got)
	}
	if err := s.Follow(Offsets{topic: {0: 27}}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a reader followed")
	}
	if err := s.Follow(Offsets{topic: {0: 27}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Follow after Close = %v, want ErrClosed", err)
	}
}

// TestFollowHoldsItsShare checks that following readers hold no more than
// their share of Config.FetchAheadBytes, counting each record's own memory:
// with 3 partitions of 20,000 small records and 768 KiB for all, each reader
// stops after its 256 KiB and at most one more fetch, far short of the
// partition (the default share, 8 MiB of keys and values, held them all).
func TestFollowHoldsItsShare(t *testing.T) {
	const perPartition = 20_000
	c := newFake(t, "logs", 3)
	addrs := c.ListenAddrs()
	for p := range int32(3) { // in small record batches, so that a fetch can stop short of the partition
		produceN(t, addrs, "logs", p, 0, perPartition, kgo.ProducerBatchMaxBytes(4<<10))
	}
	s, err := NewSource(Config{Brokers: addrs, Timeout: 5 * time.Second, FetchAheadBytes: 3 * minFollowBytes,
		Options: map[string]string{"max.partition.fetch.bytes": "65536"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Follow(Offsets{"logs": {0: 0, 1: 0, 2: 0}}); err != nil {
		t.Fatal(err)
	}
	// Each reader's fetch-ahead goroutine ends once its share is held.
	var readers []*partitionReader
	s.mu.Lock()
	for rd := range s.mu.all {
		readers = append(readers, rd)
	}
	s.mu.Unlock()
	for _, rd := range readers {
		select {
		case <-rd.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("partition %d: the reader still fetches ahead after 10s, holding %d records", rd.tp.partition, len(rd.leftover))
		}
		held := 0
		for _, rec := range rd.leftover {
			held += recordBytes(rec)
		}
		// One fetch of at most 64 KiB of record batches past the share:
		// records of about 10 bytes, so 64 KiB / 10 of them at the most.
		if maxHeld := minFollowBytes + (64<<10)/10*recordBytes(&kgo.Record{Value: []byte("p0-00000")}); held > maxHeld || len(rd.leftover) >= perPartition {
			t.Errorf("partition %d: the reader holds %d records taking %d bytes, want at most %d bytes", rd.tp.partition, len(rd.leftover), held, maxHeld)
		}
	}
	// What was fetched ahead is read as usual.
	for p := range int32(3) {
		_, got, err := readAll(t, testCtx(t), s, Range{"logs", p, 0, perPartition})
		if err != nil {
			t.Fatal(err)
		}
		if want := values(fmt.Sprintf("p%d-", p), 0, perPartition); !slices.Equal(got, want) {
			t.Fatalf("partition %d: read %d values, want %d in order", p, len(got), len(want))
		}
	}
}
