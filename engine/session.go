package engine

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

// Session is the entry point, like Spark's SparkSession: it reads streams
// and tracks the queries it started. Safe for concurrent use.
type Session struct {
	log      *slog.Logger
	timeZone string // the session time zone's name; "": UTC

	mu struct {
		sync.Mutex
		tables    map[string]*memoryTable
		listeners []func(Progress)
	}
}

// SessionOption configures a Session.
type SessionOption func(*Session)

// WithLogger sets the logger for the session and its queries (default:
// slog.Default()).
func WithLogger(l *slog.Logger) SessionOption { return func(s *Session) { s.log = l } }

// NewSession returns a session.
func NewSession(opts ...SessionOption) *Session {
	s := &Session{log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	s.mu.tables = map[string]*memoryTable{}
	return s
}

// AddProgressListener registers fn to receive the progress of every batch of
// every query of the session (Spark's StreamingQueryListener.onQueryProgress).
// fn is called from the query's goroutine after the batch commits; it must
// not block for long.
func (s *Session) AddProgressListener(fn func(Progress)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.listeners = append(s.mu.listeners, fn)
}

func (s *Session) listeners() []func(Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]func(Progress){}, s.mu.listeners...)
}

// ReadStream starts describing a streaming source (Spark's spark.readStream).
func (s *Session) ReadStream() *DataStreamReader {
	return &DataStreamReader{s: s, opts: options{}}
}

// DataStreamReader collects a source's format and options.
type DataStreamReader struct {
	s      *Session
	format string
	opts   options
}

// Format sets the source format; "kafka" is supported.
func (r *DataStreamReader) Format(f string) *DataStreamReader { r.format = f; return r }

// Option sets a source option, with Spark's names: kafka.bootstrap.servers,
// subscribe, startingOffsets, maxOffsetsPerTrigger, failOnDataLoss,
// minPartitions, includeHeaders, and kafka.* client settings; and
// gostream's kafkaRetryTimeout, a duration such as "5m": how long the query
// waits for Kafka to recover (a partition without a leader, a broker down)
// before it fails (default kafkasrc.DefaultRetryTimeout). Names match in
// any case, as in Spark; Load refuses an unknown one, listing the known.
func (r *DataStreamReader) Option(key, value string) *DataStreamReader {
	r.opts.set(key, value)
	return r
}

// Options sets several source options, as Option does.
func (r *DataStreamReader) Options(opts map[string]string) *DataStreamReader {
	for k, v := range opts {
		r.opts.set(k, v)
	}
	return r
}

// Load returns the stream as a DataFrame with Spark's Kafka schema: key,
// value (binary), topic, partition, offset, timestamp, timestampType and,
// with includeHeaders, headers.
func (r *DataStreamReader) Load() *DataFrame {
	if !strings.EqualFold(r.format, "kafka") {
		return r.s.failed(fmt.Errorf("%w: source format %q is not supported (use Format(\"kafka\"))", ErrAnalysis, r.format))
	}
	scan, err := kafkaScan(r.opts)
	if err != nil {
		return r.s.failed(err)
	}
	p := &planpb.Plan{Node: &planpb.Plan_KafkaScan{KafkaScan: scan}}
	return &DataFrame{s: r.s, plan: p, schema: operators.KafkaSchema(scan.IncludeHeaders)}
}

// KafkaOptions are the Kafka source options as typed fields, for ReadKafka.
type KafkaOptions struct {
	BootstrapServers     string            // kafka.bootstrap.servers, required
	Subscribe            []string          // topics, required
	StartingOffsets      string            // "earliest", "latest" (default) or per-partition JSON
	MaxOffsetsPerTrigger int64             // records per batch over all partitions; 0: no cap
	FailOnDataLoss       *bool             // default true
	MinPartitions        int               // at least this many map tasks; 0: one per partition
	IncludeHeaders       bool              // add the headers column
	KafkaRetryTimeout    time.Duration     // wait for Kafka to recover; 0: kafkasrc.DefaultRetryTimeout
	Kafka                map[string]string // kafka.* client settings, without the prefix
}

// ReadKafka is ReadStream().Format("kafka") with typed options.
func (s *Session) ReadKafka(o KafkaOptions) *DataFrame {
	r := s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", o.BootstrapServers).
		Option("subscribe", strings.Join(o.Subscribe, ","))
	if o.StartingOffsets != "" {
		r.Option("startingOffsets", o.StartingOffsets)
	}
	if o.MaxOffsetsPerTrigger > 0 {
		r.Option("maxOffsetsPerTrigger", strconv.FormatInt(o.MaxOffsetsPerTrigger, 10))
	}
	if o.FailOnDataLoss != nil {
		r.Option("failOnDataLoss", strconv.FormatBool(*o.FailOnDataLoss))
	}
	if o.MinPartitions > 0 {
		r.Option("minPartitions", strconv.Itoa(o.MinPartitions))
	}
	if o.IncludeHeaders {
		r.Option("includeHeaders", "true")
	}
	if o.KafkaRetryTimeout > 0 {
		r.Option("kafkaRetryTimeout", o.KafkaRetryTimeout.String())
	}
	for k, v := range o.Kafka {
		r.Option("kafka."+k, v)
	}
	return r.Load()
}

// kafkaSourceOptions are the Kafka source's options, besides kafka.*.
var kafkaSourceOptions = []string{"kafka.bootstrap.servers", "subscribe", "startingOffsets", "maxOffsetsPerTrigger",
	"failOnDataLoss", "minPartitions", "includeHeaders", "kafkaRetryTimeout", "subscribePattern", "assign"}

func kafkaScan(opts options) (*planpb.KafkaScan, error) {
	if err := opts.check("the Kafka source", kafkaSourceOptions, "kafka."); err != nil {
		return nil, err
	}
	scan := &planpb.KafkaScan{StartingOffsets: "latest", FailOnDataLoss: true, KafkaOptions: map[string]string{}}
	bad := func(key, val, allowed string) error {
		return fmt.Errorf("%w: Kafka source option %s=%q: %s", ErrAnalysis, key, val, allowed)
	}
	for lk, o := range opts {
		k, v := o.name, o.value
		switch {
		case lk == "kafka.bootstrap.servers":
			scan.BootstrapServers = v
		case lk == "subscribe":
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					scan.Subscribe = append(scan.Subscribe, t)
				}
			}
		case lk == "startingoffsets":
			scan.StartingOffsets = v
		case lk == "maxoffsetspertrigger":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return nil, bad(k, v, "must be a positive number of records")
			}
			scan.MaxOffsetsPerTrigger = n
		case lk == "failondataloss":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad(k, v, "must be true or false")
			}
			scan.FailOnDataLoss = b
		case lk == "includeheaders":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad(k, v, "must be true or false")
			}
			scan.IncludeHeaders = b
		case lk == "minpartitions":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, bad(k, v, "must be a positive number")
			}
			scan.MinPartitions = int32(n)
		case lk == "kafkaretrytimeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, bad(k, v, "must be a positive duration such as 90s or 5m")
			}
			scan.KafkaRetryTimeoutMs = d.Milliseconds()
		case lk == "subscribepattern", lk == "assign":
			return nil, bad(k, v, "not supported yet; list the topics with subscribe")
		default: // kafka.*, lower-cased as Spark passes them to the Kafka client
			scan.KafkaOptions[lk[len("kafka."):]] = v
		}
	}
	if scan.BootstrapServers == "" {
		return nil, fmt.Errorf("%w: Kafka source needs kafka.bootstrap.servers (e.g. s1:9092,s2:9092)", ErrAnalysis)
	}
	if len(scan.Subscribe) == 0 {
		return nil, fmt.Errorf("%w: Kafka source needs subscribe (a comma-separated topic list)", ErrAnalysis)
	}
	return scan, nil
}

func (s *Session) failed(err error) *DataFrame { return &DataFrame{s: s, err: err} }
