package engine

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// JobParams are the source settings `gostream submit` hands a job.
type JobParams struct {
	Brokers              string        // kafka.bootstrap.servers
	Topic                string        // the topic to subscribe to
	StartingOffsets      string        // earliest | latest | per-partition JSON
	MaxOffsetsPerTrigger int64         // 0: no cap
	FailOnDataLoss       *bool         // nil: true, as in Spark
	KafkaRetryTimeout    time.Duration // 0: kafkasrc.DefaultRetryTimeout
}

// Job is a named streaming job that `gostream submit NAME` can run: Build
// returns the DataFrame to write; submit's flags choose the sink, output
// mode, trigger and checkpoint.
type Job struct {
	Name        string
	Description string
	Build       func(s *Session, p JobParams) *DataFrame
}

var jobs = struct {
	sync.RWMutex
	m map[string]Job
}{m: map[string]Job{}}

// RegisterJob makes a job runnable by name. Register in an init func of the
// job's package and import that package into the binary (workers of a
// cluster must all link the same jobs). Registering a name twice panics.
func RegisterJob(j Job) {
	jobs.Lock()
	defer jobs.Unlock()
	if _, dup := jobs.m[j.Name]; dup {
		panic("engine: RegisterJob called twice for " + j.Name)
	}
	jobs.m[j.Name] = j
}

// LookupJob returns the registered job name.
func LookupJob(name string) (Job, error) {
	jobs.RLock()
	defer jobs.RUnlock()
	j, ok := jobs.m[name]
	if !ok {
		names := make([]string, 0, len(jobs.m))
		for n := range jobs.m {
			names = append(names, n)
		}
		sort.Strings(names)
		return Job{}, fmt.Errorf("%w %q: this binary knows [%s] (jobs register with engine.RegisterJob in a package the binary imports)", ErrUnknownJob, name, strings.Join(names, ", "))
	}
	return j, nil
}

// Jobs lists the registered jobs by name.
func Jobs() []Job {
	jobs.RLock()
	defer jobs.RUnlock()
	out := make([]Job, 0, len(jobs.m))
	for _, j := range jobs.m {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}
