package clustertest_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/cluster/clustertest"
	"github.com/gostream/gostream/internal/logbuf"
	"github.com/gostream/gostream/internal/testseed"
)

// TestChaos's flags. The defaults are CI's bounded run; by hand:
//
//	flock /tmp/gostream-kafka.lock env GOSTREAM_KAFKA_BACKEND=process go test -v -timeout 2h \
//	  -run '^TestChaos$' ./cluster/clustertest -chaos.faults 100 -chaos.lines 10000000
var (
	chaosSeed   = flag.Uint64("chaos.seed", 0, "TestChaos: replay this seed of the fault schedule and the lines (0: a new one, or $GOSTREAM_SEED)")
	chaosFaults = flag.Int("chaos.faults", 12, "TestChaos: how many faults to inject")
	chaosLines  = flag.Int("chaos.lines", 100_000, "TestChaos: how many lines to produce, a tenth before the faults, the rest while they happen (more if the faults need more, at least 10 every 100 ms)")
	chaosLogs   = flag.String("chaos.logs", "", "TestChaos: keep the workers' logs in this directory (by default they are kept only when it fails)")
	chaosKinds  = flag.String("chaos.kinds", strings.Join(chaosKindsPassing, ","),
		"TestChaos: the faults to inject in turn, each a kind of "+strings.Join(slices.Sorted(maps.Keys(faultKinds)), ",")+
			" into the leader or a follower, drawn at random (kill) or named (kill:leader, kill:follower)")
)

// chaosKindsPassing are the faults TestChaos injects by default: those the
// cluster recovers from today.
var chaosKindsPassing = []string{"kill", "pause", "isolate", "oneway", "delay"}

// A faultKind injects one fault into target and returns the function
// that heals it, called after hold.
type faultKind func(t *testing.T, f *clustertest.Faults, c *clustertest.Cluster, target *clustertest.Worker, rng *rand.Rand) (what string, heal func())

// faultKinds are the faults TestChaos can inject, by name.
var faultKinds = map[string]faultKind{
	// kill -9, restarted with its data when healed.
	"kill": func(t *testing.T, f *clustertest.Faults, c *clustertest.Cluster, w *clustertest.Worker, rng *rand.Rand) (string, func()) {
		w.Kill(t)
		return "kill -9", func() { w.Start(t) }
	},
	// SIGSTOP, SIGCONT when healed.
	"pause": func(t *testing.T, f *clustertest.Faults, c *clustertest.Cluster, w *clustertest.Worker, rng *rand.Rand) (string, func()) {
		w.Pause(t)
		return "SIGSTOP", func() { w.Resume(t) }
	},
	// Every packet between the target and the other workers dropped.
	"isolate": func(t *testing.T, f *clustertest.Faults, c *clustertest.Cluster, w *clustertest.Worker, rng *rand.Rand) (string, func()) {
		f.Isolate(t, w)
		return "isolated", func() { f.Heal(t) }
	},
	// Every packet from the target to one other worker dropped.
	"oneway": func(t *testing.T, f *clustertest.Faults, c *clustertest.Cluster, w *clustertest.Worker, rng *rand.Rand) (string, func()) {
		o := other(c, w, rng)
		f.CutOneWay(t, w, o)
		return "packets to " + o.Name + " dropped", func() { f.Heal(t) }
	},
	// Every byte between the target and one other worker delayed.
	"delay": func(t *testing.T, f *clustertest.Faults, c *clustertest.Cluster, w *clustertest.Worker, rng *rand.Rand) (string, func()) {
		o := other(c, w, rng)
		d := time.Duration(20+rng.IntN(280)) * time.Millisecond
		f.Delay(t, w, o, d)
		return fmt.Sprintf("traffic with %s delayed %v", o.Name, d), func() { f.Heal(t) }
	},
}

// other returns a worker of c other than w, chosen with rng.
func other(c *clustertest.Cluster, w *clustertest.Worker, rng *rand.Rand) *clustertest.Worker {
	var others []*clustertest.Worker
	for _, o := range c.Workers {
		if o != w {
			others = append(others, o)
		}
	}
	return others[rng.IntN(len(others))]
}

// fault is one fault TestChaos injected and how the job got over it.
type fault struct {
	kind, what string
	target     string
	role       clustertest.Role
	at         time.Time     // injected
	hold       time.Duration // until healed
	next       seenBatch     // the first batch committed after at
}

// TestChaos: a word count job submitted to three worker processes over a
// real 3-broker Kafka topic counts exactly while faults are injected one
// after another into the leader or a follower, chosen at fault time (kill
// -9 and restart, SIGSTOP and SIGCONT, the worker cut off from the others,
// its packets to another dropped one way, its traffic with another
// delayed), and lines are produced before and while they happen: the
// checker reads every batch submit prints (complete mode, jsonl) and
// finds no batch printed twice, no count that goes back, and a last batch
// with every word produced counted exactly once. A batch must commit
// within a minute of each fault's heal. The seed of the schedule and the
// lines is logged; -chaos.seed replays it. It logs each fault's recovery
// time: from the fault to the first batch committed after it.
func TestChaos(t *testing.T) {
	skipShort(t)
	seed := *chaosSeed
	if seed == 0 {
		seed = testseed.Seed(t)
	}
	t.Logf("chaos seed %d; replay: go test -run '^TestChaos$' ./cluster/clustertest -chaos.seed %d -chaos.faults %d -chaos.lines %d -chaos.kinds %s",
		seed, seed, *chaosFaults, *chaosLines, *chaosKinds)
	kinds := strings.Split(*chaosKinds, ",")
	for _, k := range kinds {
		kind, role, _ := strings.Cut(k, ":")
		if _, ok := faultKinds[kind]; !ok || role != "" && role != "leader" && role != "follower" {
			t.Fatalf("-chaos.kinds: unknown fault %q; want a kind of %v, alone or with :leader or :follower", k, slices.Sorted(maps.Keys(faultKinds)))
		}
	}
	schedule := rand.New(rand.NewPCG(seed, 1))
	lines := rand.New(rand.NewPCG(seed, 2))

	kc, topic := startTopic(t)
	c := clustertest.Start(t, 3)
	t.Cleanup(func() {
		if t.Failed() || *chaosLogs != "" {
			keepLogs(t, c, *chaosLogs)
		}
	})
	f := c.Faults(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Addrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	truth := map[string]int64{}
	first := *chaosLines / 10
	if err := produce(ctx, cl, lines, topic, first, truth); err != nil {
		t.Fatal(err)
	}

	// Follow the job as a user does, checking every batch it prints.
	check := newChecker()
	follow := c.Command(ctx, "submit", "wordcount", "--master", c.Master(), "--brokers", kc.BootstrapServers(), "--topic", topic,
		"--starting-offsets", "earliest", "--trigger", "200ms", "--output-mode", "complete", "--sink", "jsonl:-", "-q")
	var stderr logbuf.Buffer
	follow.Stderr = &stderr
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followed := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			check.line(sc.Text(), time.Now())
		}
		followed <- follow.Wait()
	}()
	waitBatch := func(what string, after time.Time, timeout time.Duration) seenBatch {
		t.Helper()
		for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
			if b, ok := check.batchAfter(after); ok {
				return b
			}
			select {
			case err := <-followed:
				t.Fatalf("%s: submit ended: %v\n%s", what, err, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				c.Quit(t)
				t.Fatalf("%s: no batch committed within %v (seed %d); the workers' goroutines are in their logs (SIGQUIT)", what, timeout, seed)
			}
		}
	}
	waitBatch("the first batch", time.Time{}, time.Minute)

	// More lines all the while the faults happen, each tick a share of
	// those left for the faults left (at least 10 lines, so that every
	// fault has batches to delay), the rest at the end.
	pctx, stopProducing := context.WithCancel(ctx)
	var faultsLeft atomic.Int64
	faultsLeft.Store(int64(*chaosFaults))
	type result struct {
		lines int
		err   error
	}
	produced := make(chan result, 1)
	go func() {
		n, err := keepProducing(ctx, pctx, cl, lines, topic, truth, 100*time.Millisecond, func(n int) int {
			left := *chaosLines - first - n
			return min(left, max(10, left/int(max(1, faultsLeft.Load())*30)))
		})
		produced <- result{first + n, err}
	}()

	var faults []fault
	for i := range *chaosFaults {
		if i%len(kinds) == 0 {
			schedule.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		}
		kind, role, _ := strings.Cut(kinds[i%len(kinds)], ":")
		fl := fault{kind: kind, role: clustertest.Role(schedule.IntN(2))}
		if role != "" {
			fl.role = map[string]clustertest.Role{"leader": clustertest.Leader, "follower": clustertest.Follower}[role]
		}
		w := f.Pick(t, fl.role, schedule)
		fl.target, fl.hold = w.Name, time.Duration(500+schedule.IntN(2500))*time.Millisecond
		fl.at = time.Now()
		what, heal := faultKinds[fl.kind](t, f, c, w, schedule)
		fl.what = what
		time.Sleep(fl.hold)
		heal()
		healed := time.Now()
		desc := fmt.Sprintf("fault %d: %s %s (%s) %s for %v", i+1, fl.role, fl.target, fl.kind, fl.what, fl.hold)
		waitBatch(desc+", healed", healed, time.Minute)
		fl.next, _ = check.batchAfter(fl.at)
		t.Logf("%s: next batch %d committed %.2fs after the fault", desc, fl.next.id, fl.next.at.Sub(fl.at).Seconds())
		faults = append(faults, fl)
		faultsLeft.Add(-1)
	}
	stopProducing()
	res := <-produced
	if res.err != nil {
		t.Fatal(res.err)
	}
	if rest := *chaosLines - res.lines; rest > 0 {
		if err := produce(context.Background(), cl, lines, topic, rest, truth); err != nil {
			t.Fatal(err)
		}
		res.lines += rest
	}
	t.Logf("%d lines produced", res.lines)

	// Every line counted, then the job stopped: submit returns.
	for deadline := time.Now().Add(2*time.Minute + time.Duration(*chaosLines/50_000)*time.Second); !maps.Equal(check.counts(), truth); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the job has not counted every line after the faults (seed %d)", seed)
			break
		}
	}
	if _, err := c.Client(t).StopJob(context.Background(), "wordcount"); err != nil {
		t.Errorf("stopping the job: %v", err)
	}
	if err := <-followed; err != nil {
		t.Errorf("submit: %v\n%s", err, stderr.String())
	}
	v := check.verdict(truth)
	t.Logf("checker: %v", v)
	logRecoveries(t, faults)
	if !v.ok() {
		t.Errorf("the counts are wrong after %d faults (seed %d): %v", len(faults), seed, v)
	}
}

// produce produces n random lines to topic, adding their words to truth.
func produce(ctx context.Context, cl *kgo.Client, rng *rand.Rand, topic string, n int, truth map[string]int64) error {
	for n > 0 {
		recs := make([]*kgo.Record, min(n, 10_000))
		n -= len(recs)
		if err := batch(ctx, cl, recs, rng, topic, truth); err != nil {
			return err
		}
	}
	return nil
}

// keepProducing produces random lines to topic until stop is done, adding
// their words to truth: a round of per(n) lines (n: the lines it produced
// so far), then a pause, and so on. A round is produced whole with ctx,
// never cut short by stop: a produce cut short may have written some of
// its lines, and truth, which counts them all, would no longer be what the
// topic holds. It returns the lines produced and the first error.
func keepProducing(ctx, stop context.Context, cl *kgo.Client, rng *rand.Rand, topic string, truth map[string]int64, pause time.Duration, per func(n int) int) (int, error) {
	n := 0
	for stop.Err() == nil {
		k := per(n)
		if err := produce(ctx, cl, rng, topic, k, truth); err != nil {
			return n, err
		}
		n += k
		select {
		case <-stop.Done():
		case <-time.After(pause):
		}
	}
	return n, nil
}

// logRecoveries logs the recovery times of the faults of each kind and
// role: median and max from the fault to the next batch committed.
func logRecoveries(t *testing.T, faults []fault) {
	by := map[string][]time.Duration{}
	for _, fl := range faults {
		k := fmt.Sprintf("%s %s", fl.kind, fl.role)
		by[k] = append(by[k], fl.next.at.Sub(fl.at))
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(by)) {
		ds := by[k]
		slices.Sort(ds)
		fmt.Fprintf(&b, "\n  %-18s %3d faults: median %6.2fs, max %6.2fs", k, len(ds), ds[len(ds)/2].Seconds(), ds[len(ds)-1].Seconds())
	}
	t.Logf("recovery, from the fault to the next batch committed (the fault held 0.5-3 s):%s", b.String())
}

// keepLogs copies the workers' logs to dir, or to a new directory when
// dir is "", and logs its name.
func keepLogs(t *testing.T, c *clustertest.Cluster, dir string) {
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", "gostream-chaos-")
	} else {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Error(err)
		return
	}
	for _, w := range c.Workers {
		b, err := os.ReadFile(w.LogPath)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, w.Name+".log"), b, 0o644)
		}
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("the workers' logs are kept in %s", dir)
}
