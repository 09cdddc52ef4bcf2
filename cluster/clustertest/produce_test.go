package clustertest_test

import (
	"context"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/kafkatest"
)

// TestKeepProducingStops stops TestChaos's producer while a round of
// lines is being produced: the round is produced whole first, so the truth
// counts exactly the words the topic holds. (When the stop cancelled the
// produce, a round cut short left lines in the truth the topic never got:
// TestChaos then reported words lost that no job could count, as with
// seed 4992306789945883474.)
func TestKeepProducingStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Kafka; skipped with -short")
	}
	kc := kafkatest.Start(t)
	topic := kafkatest.UniqueTopic(t, "produce")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := kc.CreateTopic(ctx, topic, 3, 1); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Addrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	written := func() int64 {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n
	}

	seed := testseed.Seed(t)
	truth := map[string]int64{}
	stop, stopNow := context.WithCancel(ctx)
	type result struct {
		lines int
		err   error
	}
	produced := make(chan result, 1)
	go func() {
		// Rounds of 10 produce calls each: a stop lands inside one.
		n, err := keepProducing(ctx, stop, cl, rand.New(rand.NewPCG(seed, 2)), topic, truth, time.Millisecond, func(int) int { return 100_000 })
		produced <- result{n, err}
	}()
	for deadline := time.Now().Add(time.Minute); written() == 0; time.Sleep(time.Millisecond) {
		select {
		case res := <-produced:
			t.Fatalf("the producer stopped before the topic held a line: %d lines, %v", res.lines, res.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the topic holds no line a minute after the producer started")
		}
	}
	stopNow()
	res := <-produced
	if res.err != nil {
		t.Fatal(res.err)
	}

	total := written()
	held := map[string]int64{}
	rc, err := kgo.NewClient(kgo.SeedBrokers(kc.Addrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for read := int64(0); read < total; {
		fs := rc.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			read++
			for _, w := range strings.Split(string(r.Value), " ") {
				held[w]++
			}
		})
	}
	if total != int64(res.lines) || !maps.Equal(held, truth) {
		var diff int64
		for w, n := range truth {
			diff += n - held[w]
		}
		t.Fatalf("the topic holds %d lines, the producer counted %d; the truth counts %d words more than the topic holds", total, res.lines, diff)
	}
	t.Logf("stopped after %d lines, all in the topic and the truth", res.lines)
}
