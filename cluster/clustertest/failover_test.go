package clustertest_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster/clustertest"
	"github.com/gostream/gostream/internal/testseed"
)

// TestClusterWorkerKilled: three `gostream worker` processes run a word
// count batch after batch over Apache Kafka (3 brokers) into a jsonl file
// on the leader; a worker that is not the leader is killed (kill -9) and
// started again, or paused (SIGSTOP) and continued (SIGCONT), once the
// job went on without it. The leader finds it down, logs a new assignment
// epoch without it, runs the batch in flight again and goes on, and gives
// it work again once it is back: the file's last batch holds the exact
// counts of every line produced, before, during and after the fault. The test logs how long after the fault the leader held the
// worker down, logged the new epoch and committed a batch:
//
//	flock /tmp/gostream-kafka.lock env GOSTREAM_KAFKA_BACKEND=process go test -count=1 -v -run TestClusterWorkerKilled ./cluster/clustertest
func TestClusterWorkerKilled(t *testing.T) {
	skipShort(t)
	kc, _ := startTopic(t)
	for _, fault := range []string{"kill", "stop"} {
		t.Run(fault, func(t *testing.T) {
			rng := testseed.Rand(t)
			topic := strings.ReplaceAll(t.Name(), "/", "-")
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			if err := kc.CreateTopic(ctx, topic, 3, 2); err != nil {
				t.Fatal(err)
			}
			truth := map[string]int64{}
			produceLines(t, kc, topic, rng, 40000, truth) // 20 batches and more
			c := clustertest.Start(t, 3)
			leader := c.WaitLeader(t).Leader
			path := filepath.Join(t.TempDir(), "counts.jsonl")
			follow := c.Command(ctx, "submit", "wordcount", "--master", c.Master(), "--brokers", kc.BootstrapServers(), "--topic", topic,
				"--starting-offsets", "earliest", "--trigger", "100ms", "--max-offsets-per-trigger", "2000", "--output-mode", "complete",
				"--sink", "jsonl:"+path, "-q")
			if err := follow.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cancel()
				_ = follow.Wait()
			}()
			f := &countsFile{t: t, path: path}
			counted, waitCounts := f.counted, f.wait
			waitCounts("running", func(batch int64, _ map[string]int64) bool { return batch >= 2 })

			var victim *clustertest.Worker
			for _, w := range c.Workers {
				if w.Name != leader && (victim == nil || rng.IntN(2) == 0) {
					victim = w
				}
			}
			faultAt := time.Now()
			if fault == "kill" {
				victim.Kill(t)
			} else {
				victim.Pause(t)
			}
			t.Logf("%s of %s (leader %s) at batch %d", fault, victim.Name, leader, func() int64 { b, _ := counted(); return b }())
			var lw *clustertest.Worker
			for _, w := range c.Workers {
				if w.Name == leader {
					lw = w
				}
			}
			var down, epoch time.Time
			waitCounts("failed over", func(batch int64, _ map[string]int64) bool {
				down, epoch = logTimes(t, lw.LogPath, victim.Name)
				return !epoch.IsZero() && !firstAfter(f.seen, epoch).IsZero()
			})
			next := firstAfter(f.seen, epoch)
			t.Logf("%s of %s: held down after %v, new epoch logged after %v, next batch committed after %v",
				fault, victim.Name, down.Sub(faultAt).Round(time.Millisecond), epoch.Sub(faultAt).Round(time.Millisecond), next.Sub(faultAt).Round(time.Millisecond))
			produceLines(t, kc, topic, rng, 5000, truth)
			waitCounts("exact after the "+fault, func(_ int64, counts map[string]int64) bool { return maps.Equal(counts, truth) })
			if fault == "stop" {
				victim.Resume(t)
			} else {
				victim.Start(t)
			}
			produceLines(t, kc, topic, rng, 5000, truth)
			waitCounts("exact once "+victim.Name+" is back", func(_ int64, counts map[string]int64) bool { return maps.Equal(counts, truth) })
		})
	}
}

// logTime matches a worker's log line's time.
var logTime = regexp.MustCompile(`^time=(\S+) `)

// logTimes returns when the worker logging to path (the leader) logged
// member down, and a job's assignment epoch that lost it; zero times for
// lines not logged yet.
func logTimes(t *testing.T, path, member string) (down, epoch time.Time) {
	t.Helper()
	down = firstLogged(t, path, time.Time{}, func(line string) bool {
		return strings.Contains(line, "cluster: member is down") && strings.Contains(line, "member="+member)
	})
	epoch = firstLogged(t, path, time.Time{}, func(line string) bool {
		return strings.Contains(line, "cluster: job assigned") && strings.Contains(line, "no answer from "+member+" for")
	})
	return down, epoch
}

// firstLogged returns the time of the first line of the log at path
// logged after after that match accepts, zero if none.
func firstLogged(t *testing.T, path string, after time.Time, match func(line string) bool) time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		m := logTime.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err == nil && at.After(after) && match(line) {
			return at
		}
	}
	return time.Time{}
}

// firstAfter is the first time a batch was seen after at, zero if none.
func firstAfter(seen map[int64]time.Time, at time.Time) time.Time {
	var first time.Time
	for _, s := range seen {
		if s.After(at) && (first.IsZero() || s.Before(first)) {
			first = s
		}
	}
	return first
}

// countsFile is the jsonl file a word count (complete mode) writes on its
// leader.
type countsFile struct {
	t    *testing.T
	path string
	seen map[int64]time.Time // when counted first saw each batch last
}

// counted returns the file's last batch and its counts.
func (f *countsFile) counted() (int64, map[string]int64) {
	b, err := os.ReadFile(f.path)
	if err != nil && !os.IsNotExist(err) {
		f.t.Fatal(err)
	}
	batch, counts := lastCounts(f.t, string(b))
	if f.seen == nil {
		f.seen = map[int64]time.Time{}
	}
	if _, ok := f.seen[batch]; !ok {
		f.seen[batch] = time.Now()
	}
	return batch, counts
}

// wait polls the file until done accepts its last batch and counts, for
// up to 2 minutes.
func (f *countsFile) wait(what string, done func(batch int64, counts map[string]int64) bool) {
	f.t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		batch, counts := f.counted()
		if done(batch, counts) {
			f.t.Logf("%s: batch %d", what, batch)
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not after 2 minutes; batch %d", what, batch)
		}
	}
}
