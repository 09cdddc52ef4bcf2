package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tally counts words the way Spark's split(value, ' ') does.
func tally(lines []string) map[string]int64 {
	counts := make(map[string]int64)
	for _, l := range lines {
		for _, w := range strings.Split(l, " ") {
			counts[w]++
		}
	}
	return counts
}

func TestGeneratorIsDeterministicAndCountsItsWords(t *testing.T) {
	a, b := newGenerator(7), newGenerator(7)
	var lines []string
	for i := range 20_000 {
		la, lb := string(a.line()), string(b.line())
		if la != lb {
			t.Fatalf("line %d differs between two generators with one seed:\n%q\n%q", i, la, lb)
		}
		lines = append(lines, la)
	}
	want := a.expected()
	got := tally(lines)
	for w, n := range got {
		if want.words[w] != n {
			t.Errorf("word %q: generator tallied %d, lines hold %d", w, want.words[w], n)
		}
	}
	if len(got) != len(want.words) {
		t.Errorf("lines hold %d distinct words, generator tallied %d", len(got), len(want.words))
	}
	if want.words[""] == 0 {
		t.Error("no empty words: double spaces should occur in 20000 lines")
	}
}

func TestKeyLinesAreDistinct(t *testing.T) {
	g := newGenerator(1)
	seen := make(map[string]bool)
	for i := range 50 {
		for _, w := range strings.Split(string(g.keyLine(i*20, 20)), " ") {
			if seen[w] {
				t.Fatalf("key %q generated twice", w)
			}
			seen[w] = true
		}
	}
	if g.expected().unique.rows != 1000 {
		t.Errorf("digest counts %d keys, want 1000", g.expected().unique.rows)
	}
}

func TestCheckers(t *testing.T) {
	g := newGenerator(3)
	var lines []string
	for range 500 {
		lines = append(lines, string(g.line()))
	}
	lines = append(lines, string(g.keyLine(0, 5)))
	want := g.expected()
	counts := tally(lines)

	dir := t.TempDir()
	// gostream's jsonl sink: an early, partial batch, then the final one.
	var jsonl bytes.Buffer
	fmt.Fprintf(&jsonl, "{\"batch\":0,\"word\":\"INFO\",\"count\":1}\n")
	for w, n := range counts {
		fmt.Fprintf(&jsonl, "{\"batch\":1,\"word\":%q,\"count\":%d}\n", w, n)
	}
	good := filepath.Join(dir, "out.jsonl")
	os.WriteFile(good, jsonl.Bytes(), 0o644)
	if err := checkJSONLines(good, want); err != nil {
		t.Errorf("gostream output with the right counts: %v", err)
	}
	// Spark's JSON part files.
	spark := filepath.Join(dir, "spark")
	os.Mkdir(spark, 0o755)
	var part bytes.Buffer
	for w, n := range counts {
		if w == "k3" {
			n++ // one wrong unique count
		}
		fmt.Fprintf(&part, "{\"word\":%q,\"count\":%d}\n", w, n)
	}
	os.WriteFile(filepath.Join(spark, "part-00000.json"), part.Bytes(), 0o644)
	if err := checkSparkDir(spark, want); err == nil || !strings.Contains(err.Error(), "unique tokens") {
		t.Errorf("Spark output with a wrong key count: got %v, want a unique-token mismatch", err)
	}
	wantINFO := want.words["INFO"]
	want.words["INFO"]++
	if err := checkJSONLines(good, want); err == nil || !strings.Contains(err.Error(), `"INFO"`) {
		t.Errorf("gostream output with a wrong INFO count: got %v, want an error naming INFO", err)
	}
	want.words["INFO"] = wantINFO
}

func TestPercentile(t *testing.T) {
	vals := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {10, 1}, {100, 10}} {
		if got := *percentile(vals, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 50) != nil {
		t.Error("percentile of nothing should be nil")
	}
}

func TestReadProgress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "progress.jsonl")
	os.WriteFile(path, []byte(`{"batchId":0,"numInputRows":10,"timestamp":"2026-01-02T03:04:05.000Z","durationMs":{"triggerExecution":500}}
{"batchId":1,"numInputRows":0,"timestamp":"2026-01-02T03:04:06.000Z","durationMs":{"triggerExecution":9000}}
{"batchId":2,"numInputRows":10,"timestamp":"2026-01-02T03:04:07.000Z","durationMs":{"triggerExecution":300}}
`), 0o644)
	st, err := readProgress(path)
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2026, 1, 2, 3, 4, 5, 500e6, time.UTC)
	if st.batches != 3 || !st.firstBatch.Equal(first) || *st.p50 != 300 || *st.p99 != 500 {
		t.Errorf("got %d batches, first done %v, p50 %v, p99 %v; want 3, %v, 300, 500 (empty batches ignored)",
			st.batches, st.firstBatch, *st.p50, *st.p99, first)
	}
}

// TestLinePool checks that a pool returns its generator's lines in turn,
// round and round, and that marking a line leaves the pool's copy alone.
func TestLinePool(t *testing.T) {
	g := newGenerator(3)
	var want []string
	for range 5 {
		want = append(want, string(g.line()))
	}
	p := newLinePool(newGenerator(3), len(want))
	for i := range 3 * len(want) {
		line := p.line()
		if string(line) != want[i%len(want)] {
			t.Fatalf("line %d: %q, want %q", i, line, want[i%len(want)])
		}
		if i == 7 {
			if m := string(markerLine(line, 42)); m != want[2]+" "+markerToken(42) {
				t.Fatalf("marked line %q", m)
			}
		}
	}
	if got := string(p.line()); got != want[0] {
		t.Fatalf("after marking: line %q, want %q", got, want[0])
	}
	if got := string(p.line()); got != want[1] {
		t.Fatalf("after marking: line %q, want %q", got, want[1])
	}
	if got := string(p.line()); got != want[2] {
		t.Fatalf("marking changed the pool: line %q, want %q", got, want[2])
	}
}

func TestMarkerClock(t *testing.T) {
	m := newMarkerClock()
	t0 := time.Now()
	m.produced(1, t0)
	m.produced(2, t0)
	m.produced(3, t0.Add(-time.Hour)) // before the window
	m.scan([]byte(`{"batch":4,"word":"`+markerToken(1)+`","count":1}`), t0.Add(40*time.Millisecond))
	m.scan([]byte(markerToken(1)+" "+markerToken(3)), t0.Add(time.Second)) // seen again: ignored
	select {
	case <-m.first():
	default:
		t.Fatal("first() not closed after a marker was seen")
	}
	lat, missing := m.latencies(t0, t0.Add(time.Minute))
	if len(lat) != 1 || lat[0] != 40 || missing != 1 {
		t.Errorf("latencies %v, missing %d; want [40], 1", lat, missing)
	}
	us := t0.UnixMicro()
	want := fmt.Sprintf(`{"marker":1,"produced_us":%d,"output_us":%d}`+"\n"+
		`{"marker":2,"produced_us":%d,"output_us":null}`+"\n"+
		`{"marker":3,"produced_us":%d,"output_us":%d}`+"\n",
		us, us+40_000, us, us-3_600_000_000, us+1_000_000)
	if tl := string(m.timeline()); tl != want {
		t.Errorf("timeline\n%s\nwant\n%s", tl, want)
	}
}

// TestPacedProducerDeliversAllOnStop stops a producer mid-stream and checks
// that every marker it timed as produced is in the topic: records still
// buffered when production stops must be flushed, not failed, or the
// latency run reports markers missing that no system could output.
func TestPacedProducerDeliversAllOnStop(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "lat"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := newProducer(c.ListenAddrs(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	clock := newMarkerClock()
	p := &pacedProducer{cl: cl, topic: "lat", lines: newLinePool(newGenerator(1), 1000), clock: clock}
	p.setPace(200_000, 100)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	stop()
	<-done
	if err := p.firstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("lat"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var got int64
	deadline := time.Now().Add(30 * time.Second)
	for got < p.produced && time.Now().Before(deadline) {
		fetches := consumer.PollRecords(ctx2s(t), 10_000)
		fetches.EachRecord(func(r *kgo.Record) {
			got++
			clock.scan(r.Value, time.Now())
		})
	}
	lat, missing := clock.latencies(time.Time{}, time.Now())
	if got != p.produced || missing != 0 || len(lat) != p.markers {
		t.Fatalf("topic holds %d of %d records produced; %d of %d markers missing", got, p.produced, missing, p.markers)
	}
}

// ctx2s is a context that ends after two seconds or with the test.
func ctx2s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPeakRSSIsTheChilds checks that a child's peak RSS is its own, not the
// suite's: wait4's ru_maxrss of a vforked child includes its parent's peak.
func TestPeakRSSIsTheChilds(t *testing.T) {
	held := make([]byte, 256<<20)
	for i := range held {
		held[i] = 1
	}
	c, err := startChild(exec.Command("sleep", "0.3"), filepath.Join(t.TempDir(), "sleep.log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cost, err := c.wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cost.peakRSS > 64<<20 {
		t.Fatalf("sleep's peak RSS %d MiB, with the suite holding %d MiB: want sleep's own", cost.peakRSS>>20, len(held)>>20)
	}
	held[len(held)-1] = 2 // held until the child has been measured
}

func TestMedianRun(t *testing.T) {
	run := func(rate, cpu float64) result { return result{RecordsPerSec: ptr(rate), CPUS: cpu} }
	got, rates := medianRun([]result{run(30, 1), run(10, 2), run(20, 3)}, recordsPerSec, true)
	if *got.RecordsPerSec != 20 || got.CPUS != 3 {
		t.Errorf("median of 30, 10, 20: the run at %v records/s (cpu %v), want the one at 20 (cpu 3)", *got.RecordsPerSec, got.CPUS)
	}
	if !slices.Equal(rates, []float64{30, 10, 20}) {
		t.Errorf("figures %v, want every run's rate in run order", rates)
	}
	if got, _ := medianRun([]result{run(10, 1), run(40, 2)}, recordsPerSec, true); *got.RecordsPerSec != 10 {
		t.Errorf("median of two runs: %v records/s, want the slower, 10", *got.RecordsPerSec)
	}
	failed := result{Error: "boom"}
	if got, figures := medianRun([]result{run(10, 1), failed, run(30, 2)}, recordsPerSec, true); got.Error != "boom" || figures != nil {
		t.Errorf("a failed run among three: got %+v and %v, want the failure alone", got, figures)
	}
	if got, figures := medianRun([]result{run(5, 1)}, recordsPerSec, true); figures != nil || *got.RecordsPerSec != 5 {
		t.Errorf("one run: got %+v and %v, want it unchanged", got, figures)
	}

	lat := func(p99, cpu float64) result { return result{LatencyP99Ms: ptr(p99), CPUS: cpu} }
	got, p99s := medianRun([]result{lat(90, 1), lat(300, 2), lat(20, 3), lat(40, 4)}, latencyP99, false)
	if *got.LatencyP99Ms != 90 || got.CPUS != 1 || !slices.Equal(p99s, []float64{90, 300, 20, 40}) {
		t.Errorf("median p99 of 90, 300, 20, 40: the run at %v ms (cpu %v) and %v; want the worse middle one, 90 (cpu 1), and every p99 in run order", *got.LatencyP99Ms, got.CPUS, p99s)
	}
	if got, _ := medianRun([]result{lat(50, 1), failed}, latencyP99, false); got.Error != "boom" {
		t.Errorf("a failed latency run: got %+v, want the failure", got)
	}
}

func TestMachineCPUShares(t *testing.T) {
	a := parseMachineCPU("cpu  1000 0 200 5000 100 0 50 150 0 0")
	b := parseMachineCPU("cpu  1550 0 250 5300 100 0 50 250 0 0")
	// 1000 ticks in between: 300 idle, 100 stolen, 600 busy.
	busy, steal := a.shares(b)
	if busy == nil || *busy != 60 || *steal != 10 {
		t.Fatalf("busy %v, steal %v; want 60 and 10", fmtOpt(busy, "%.1f"), fmtOpt(steal, "%.1f"))
	}
	if busy, _ := (machineCPU{}).shares(b); busy != nil {
		t.Errorf("shares from an unreadable /proc/stat: %v, want nil", *busy)
	}
	if m := parseMachineCPU("intr 1 2 3"); m != (machineCPU{}) {
		t.Errorf("parsed a line that is not cpu's: %+v", m)
	}
	if m := readMachineCPU(); runtime.GOOS == "linux" && m.total == 0 {
		t.Error("readMachineCPU read nothing on Linux")
	}
}

// TestGostreamArgsCluster checks that a cluster's job is submitted to its
// master, without the local mode's checkpoint (which submit refuses with
// --master), and a local job with its checkpoint.
func TestGostreamArgsCluster(t *testing.T) {
	s := &suite{cfg: config{shufflePartitions: 4}}
	j := job{brokers: "b:9092", topic: "logs", dir: t.TempDir()}
	local := strings.Join(s.gostreamArgs(j), " ")
	if !strings.Contains(local, "--checkpoint "+filepath.Join(j.dir, "checkpoint")) || strings.Contains(local, "--master") {
		t.Errorf("local args %q: want --checkpoint and no --master", local)
	}
	j.master = "gostream://127.0.1.1:7077,127.0.1.2:7077"
	clustered := strings.Join(s.gostreamArgs(j), " ")
	if !strings.Contains(clustered, "--master "+j.master) || strings.Contains(clustered, "--checkpoint") {
		t.Errorf("cluster args %q: want --master and no --checkpoint", clustered)
	}
}

// TestAllReached checks the leader wait's condition on a cluster status.
func TestAllReached(t *testing.T) {
	member := func(name, state string) *clusterpb.MemberStatus {
		return &clusterpb.MemberStatus{Member: &clusterpb.Member{Name: name}, State: state}
	}
	up := []*clusterpb.MemberStatus{member("s1", "Leader"), member("s2", "Follower"), member("s3", "Follower")}
	if err := allReached(&clusterpb.StatusResponse{Leader: "s1", Members: up}); err != nil {
		t.Errorf("every member reached: %v", err)
	}
	for name, st := range map[string]*clusterpb.StatusResponse{
		"no leader":   {Members: up},
		"two members": {Leader: "s1", Members: up[:2]},
		"unreachable": {Leader: "s1", Members: append(up[:2:2], member("s3", "Unreachable"))},
	} {
		if err := allReached(st); err == nil {
			t.Errorf("%s: allReached = nil, want an error", name)
		}
	}
}
