package kafkasrc

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/gostream/gostream/internal/freeport"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newFake starts a one-broker kfake cluster with the topic created.
func newFake(t testing.TB, topic string, partitions int32) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// produceN produces n records "p<partition>-<i>" to one partition, with i
// continuing from first.
func produceN(t testing.TB, addrs []string, topic string, partition int32, first, n int, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: partition, Value: fmt.Appendf(nil, "p%d-%d", partition, first+i)}
	}
	if err := cl.ProduceSync(testCtx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func newTestSource(t testing.TB, addrs []string, options map[string]string) *Source {
	t.Helper()
	s, err := NewSource(Config{Brokers: addrs, Options: options, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// readAll reads r and returns the offsets and values delivered, checking
// that they are in increasing order within [From, Until).
func readAll(t testing.TB, ctx context.Context, s *Source, r Range) (offsets []int64, values []string, err error) {
	t.Helper()
	err = s.ReadRange(ctx, r, func(recs []*kgo.Record) error {
		for _, rec := range recs {
			if rec.Offset < r.From || rec.Offset >= r.Until || rec.Partition != r.Partition || rec.Topic != r.Topic {
				t.Errorf("range %s delivered %s/%d@%d", r, rec.Topic, rec.Partition, rec.Offset)
			}
			if n := len(offsets); n > 0 && rec.Offset <= offsets[n-1] {
				t.Errorf("range %s delivered offset %d after %d", r, rec.Offset, offsets[n-1])
			}
			offsets = append(offsets, rec.Offset)
			values = append(values, string(rec.Value))
		}
		return nil
	})
	return offsets, values, err
}

// readDirect reads r with ReadValues; a null value reads as "<null>".
func readDirect(ctx context.Context, s *Source, r Range) (vals []string, err error) {
	err = s.ReadValues(ctx, r, collectValues(&vals))
	return vals, err
}

// collectValues returns a ReadValues callback that appends copies of the
// values to vals ("<null>" for a null value) and releases their memory.
func collectValues(vals *[]string) func([][]byte, func()) error {
	return func(vs [][]byte, release func()) error {
		defer release() // the values are copied: their memory may serve the next fetch
		for _, v := range vs {
			if v == nil {
				*vals = append(*vals, "<null>")
			} else {
				*vals = append(*vals, string(v))
			}
		}
		return nil
	}
}

// freeAddr returns a loopback address nothing listens on, below the
// kernel's ephemeral range (freeport), which no other socket is given.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := freeport.Listen("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func values(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}

// readValues reads the ranges one after the other, each within timeout, and
// returns the values in order; label names the case in failures.
func readValues(t *testing.T, ctx context.Context, s *Source, label string, timeout time.Duration, ranges ...Range) []string {
	t.Helper()
	var got []string
	for _, r := range ranges {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		_, vals, err := readAll(t, rctx, s, r)
		cancel()
		if err != nil {
			t.Fatalf("%s: range %s: %v", label, r, err)
		}
		got = append(got, vals...)
	}
	return got
}

// drainBatches plans and reads batch after batch of topic, as the engine's
// driver does, until a plan has no ranges. before runs ahead of each batch's
// planning (to produce more data in between). Every range must deliver
// exactly its length; the values are returned by partition, in order.
func drainBatches(t *testing.T, ctx context.Context, s *Source, topic string, in PlanInput, before func(batch int)) map[int32][]string {
	t.Helper()
	got := map[int32][]string{}
	for batch := 0; ; batch++ {
		before(batch)
		var err error
		if in.Earliest, in.Latest, err = s.Offsets(ctx, []string{topic}); err != nil {
			t.Fatal(err)
		}
		plan, err := PlanBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Ranges) == 0 {
			return got
		}
		for _, r := range plan.Ranges {
			offs, vals, err := readAll(t, ctx, s, r)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(offs)) != r.Len() {
				t.Fatalf("batch %d: range %s gave %d records", batch, r, len(offs))
			}
			got[r.Partition] = append(got[r.Partition], vals...)
		}
		in.Prev = plan.End
	}
}

// produceTxn writes values p0-first ... p0-(first+n-1) to topic in one
// transaction (transactional id: the topic), ended by commit or abort.
func produceTxn(t *testing.T, ctx context.Context, addrs []string, topic string, first, n int, end kgo.TransactionEndTry) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.TransactionalID(topic), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		cl.Produce(ctx, kgo.StringRecord(fmt.Sprintf("p0-%d", first+i)), nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, end); err != nil {
		t.Fatal(err)
	}
}
