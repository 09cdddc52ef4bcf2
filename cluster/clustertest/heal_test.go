package clustertest_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster/clustertest"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/proto/clusterpb"
)

// cutFor is how long TestClusterNetworkHealed cuts a follower off: long
// enough for the leader to hold it down and go on without it, and for the
// retries of every connection to it to back off many times.
const cutFor = 12 * time.Second

// TestClusterNetworkHealed: three `gostream worker` processes run a word
// count batch after batch over Apache Kafka (3 brokers) while lines keep
// coming; a follower is cut off for cutFor (isolate: every packet between
// it and the other workers dropped; oneway: its packets to the leader
// dropped, so that the leader's connections to it hang rather than fail),
// then the network heals. The leader holds it down and goes on without it;
// after the heal it finds it back, gives it work again and commits a
// batch planned since, and the last batch holds the exact counts of every
// line produced. The test logs how long after the heal the leader found it
// back (its log), gave it work and committed that batch (its status), and
// the leader's log since the heal:
//
//	flock /tmp/gostream-kafka.lock env GOSTREAM_KAFKA_BACKEND=process go test -count=1 -v -run TestClusterNetworkHealed ./cluster/clustertest
func TestClusterNetworkHealed(t *testing.T) {
	skipShort(t)
	for _, fault := range []string{"isolate", "oneway"} {
		t.Run(fault, func(t *testing.T) {
			s := startStreaming(t, streamSetup{partitions: 3, lines: 2000, vocab: words})
			js := newJobView(t, s.c.Workers...).waitJob(t, "the job commits a batch", func(js *clusterpb.JobStatus) bool { return js.LastCommitted >= 1 })
			leader := workerNamed(t, s.c, js.Driver)
			f := s.c.Faults(t)
			victim := f.Pick(t, clustertest.Follower, rand.New(rand.NewPCG(testseed.Seed(t), 1)))
			view := newJobView(t, others(s.c, victim)...)
			works := func(js *clusterpb.JobStatus) bool {
				reads, owns, standsBy := holds(js.Assignment, victim.Name)
				return reads || owns || standsBy
			}
			// until waits for the job's status to meet cond, then for a
			// batch planned since to commit; it returns how long after from
			// each happened, and that batch.
			until := func(what string, from time.Time, cond func(*clusterpb.JobStatus) bool) (met, committed time.Duration, batch int64) {
				planned := int64(-1)
				js := view.waitJob(t, what, func(js *clusterpb.JobStatus) bool {
					if planned < 0 && cond(js) {
						met, planned = time.Since(from), js.LastPlanned
					}
					return planned >= 0 && js.LastCommitted > planned
				})
				return met.Round(time.Millisecond), time.Since(from).Round(time.Millisecond), js.LastCommitted
			}

			cut := time.Now()
			if fault == "isolate" {
				f.Isolate(t, victim)
			} else {
				f.CutOneWay(t, victim, leader)
			}
			without, committed, batch := until("the job goes on without "+victim.Name, cut, func(js *clusterpb.JobStatus) bool { return !works(js) })
			t.Logf("%s of %s (leader %s): given no work after %v, batch %d committed without it after %v", fault, victim.Name, leader.Name, without, batch, committed)
			time.Sleep(time.Until(cut.Add(cutFor)))
			f.Heal(t)
			healed := time.Now()
			up, committed, batch := until(victim.Name+" works again", healed, works)
			back := firstLogged(t, leader.LogPath, healed, func(line string) bool {
				return strings.Contains(line, "cluster: member is back") && strings.Contains(line, "member="+victim.Name)
			})
			if back.IsZero() {
				t.Errorf("%s works again, but the leader's log says nothing of it being back", victim.Name)
			}
			t.Logf("healed after %v: %s back after %v, given work after %v, batch %d committed after %v; the leader's log since the heal:\n%s",
				cutFor, victim.Name, back.Sub(healed).Round(time.Millisecond), up, batch, committed, logSince(t, leader, healed))
			s.waitExact(t)
		})
	}
}
