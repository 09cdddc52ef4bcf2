package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/kafkasrc"
)

// TestTriggerRefusesTinyIntervals checks that an interval below
// MinTriggerInterval is refused, from the CLI's string and from the
// library's ProcessingTime, before the query touches Kafka.
func TestTriggerRefusesTinyIntervals(t *testing.T) {
	for _, s := range []string{"1ns", "999us", "0.5ms"} {
		if _, err := ParseTrigger(s); !errors.Is(err, ErrAnalysis) || !strings.Contains(err.Error(), "below the minimum of 1ms") {
			t.Errorf("ParseTrigger(%q) = %v, want an error naming the minimum", s, err)
		}
	}
	if tr, err := ParseTrigger("1ms"); err != nil || tr.sched.Interval != MinTriggerInterval {
		t.Errorf("ParseTrigger(1ms) = %v, %v", tr, err)
	}
	s := NewSession()
	df := s.ReadStream().Format("kafka").Option("kafka.bootstrap.servers", "127.0.0.1:1").Option("subscribe", "logs").Load()
	_, err := df.WriteStream().Format("memory").QueryName("tiny").Trigger(ProcessingTime(time.Nanosecond)).Start(context.Background())
	if !errors.Is(err, ErrAnalysis) || !strings.Contains(err.Error(), "trigger interval 1ns is below the minimum") {
		t.Fatalf("Start with ProcessingTime(1ns) = %v, want ErrAnalysis naming the interval", err)
	}
}

// TestProcessingTimeQueryStops runs a query at the shortest interval while
// records keep arriving, and checks that Stop ends it within a deadline.
func TestProcessingTimeQueryStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := kafkasrc.StartEmbedded(ctx, "logs", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := NewSession()
	lines := s.ReadStream().Format("kafka").Option("kafka.bootstrap.servers", strings.Join(e.Addrs(), ",")).
		Option("subscribe", "logs").Option("startingOffsets", "earliest").Load().
		Select(Col("value").Cast(String))
	words := lines.Select(Explode(Split(Col("value"), " ")).As("word")).GroupBy(Col("word")).Count()
	q, err := words.WriteStream().OutputMode(Update).ForeachBatch(func(context.Context, int64, []Row) error { return nil }).
		Trigger(ProcessingTime(MinTriggerInterval)).Option("checkpointLocation", t.TempDir()).Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.DefaultProduceTopic("logs"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	feedCtx, stopFeed := context.WithCancel(ctx)
	fed := make(chan error, 1)
	go func() { // until the query stopped
		for feedCtx.Err() == nil {
			if err := cl.ProduceSync(feedCtx, &kgo.Record{Value: []byte("a b c")}).FirstErr(); err != nil && feedCtx.Err() == nil {
				fed <- err
				return
			}
		}
		fed <- nil
	}()
	defer func() {
		stopFeed()
		if err := <-fed; err != nil {
			t.Error(err)
		}
	}()
	for q.LastProgress() == nil || q.LastProgress().BatchID < 5 {
		if !q.IsActive() {
			t.Fatalf("query stopped on its own: %v", q.Exception())
		}
		if ctx.Err() != nil {
			t.Fatal("the query did not commit 6 batches within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	q.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for q.IsActive() {
		if time.Now().After(deadline) {
			t.Fatal("query still running 10s after Stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := q.Exception(); err != nil {
		t.Fatal(err)
	}
}
