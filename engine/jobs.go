package engine

import (
	"fmt"
	"time"

	"github.com/gostream/gostream/internal/registry"
	"github.com/gostream/gostream/operators"
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

// jobs are the registered jobs.
var jobs = registry.New[Job]("job", nil)

// RegisterJob makes a job runnable by name. Register in an init func of the
// job's package and import that package into the binary (workers of a
// cluster must all link the same jobs). A name registered twice is refused
// with an error wrapping ErrDuplicate, and the name becomes unusable:
// LookupJob fails for it rather than run either job.
func RegisterJob(j Job) error { return jobs.Register(j.Name, j) }

// LookupJob returns the registered job name.
func LookupJob(name string) (Job, error) {
	j, err := jobs.Lookup(name)
	if err != nil {
		return Job{}, fmt.Errorf("%w: %w (jobs register with engine.RegisterJob in a package the binary imports)", ErrUnknownJob, err)
	}
	return j, nil
}

// Jobs lists the registered jobs by name.
func Jobs() []Job { return jobs.All() }

// Fingerprint identifies the jobs and functions (UDFs) registered in this
// binary, by name and signature: two binaries with the same fingerprint
// run the same plans. A cluster compares its workers' fingerprints when a
// job is submitted; Registered says what they hold.
func Fingerprint() string { return registry.Hash(Registered()) }

// Registered describes the registered jobs and functions, one per line:
// "job wordcount", "function parse_status (string) -> bigint", sorted by
// name within each kind; what Fingerprint hashes, for saying how two
// binaries differ.
func Registered() []string {
	var out []string
	for _, s := range jobs.Signatures() {
		out = append(out, "job "+s)
	}
	for _, s := range operators.Funcs.Signatures() {
		out = append(out, "function "+s)
	}
	return out
}

// Registrations are jobs and UDFs registered until Close: a test registers
// through one it closes in t.Cleanup, so that its names do not leak into
// the tests after it, or into its own next run under -count. Safe for
// concurrent use.
type Registrations struct {
	jobs  *registry.Scope[Job]
	funcs *registry.Scope[operators.Func]
}

// NewRegistrations returns an empty set of registrations.
func NewRegistrations() *Registrations {
	return &Registrations{jobs: jobs.Scope(), funcs: operators.Funcs.Scope()}
}

// RegisterJob is the package's RegisterJob, until Close.
func (r *Registrations) RegisterJob(j Job) error { return r.jobs.Register(j.Name, j) }

// Close removes what was registered through r.
func (r *Registrations) Close() {
	r.jobs.Close()
	r.funcs.Close()
}
