package kafkasrc

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultTimeout bounds broker discovery and metadata calls when a Timeout of
// zero is given.
const DefaultTimeout = 10 * time.Second

// DefaultRetryTimeout bounds how long a call retries errors that may pass
// when a RetryTimeout of zero is given: a broker restart, and the election
// of new leaders that follows a crash, take seconds to a minute.
const DefaultRetryTimeout = 5 * time.Minute

// Reader fetch defaults. Each partition reader has its own client, so the
// total is per partition. Every fetch is decompressed and decoded in memory
// while the next one is buffered, so the per-partition size sets most of a
// reader's memory: in the bench suite's throughput run (3 runs of each), 512
// KiB read as fast as Kafka's default of 1 MiB with 25-45 MiB less peak RSS;
// 256 KiB was 10% slower, and 4 MiB no faster with twice the RSS.
const (
	defaultFetchMaxBytes          = 64 << 20
	defaultFetchMaxPartitionBytes = 512 << 10
	defaultFetchMaxWait           = 5 * time.Second // franz-go's default (Kafka's Java client waits 500 ms)
)

// Config configures a Source. The zero value of every field but Brokers is
// usable.
type Config struct {
	// Brokers are the bootstrap brokers as host:port. Required unless
	// Options holds "bootstrap.servers".
	Brokers []string
	// Options is Spark's "kafka.*" option passthrough with the prefix
	// stripped, e.g. {"fetch.max.bytes": "1048576"}. Unknown options are an
	// error listing the supported ones; see SupportedOptions.
	Options map[string]string
	// Timeout bounds each attempt of a metadata or offsets call, and how
	// long calls wait for a cluster that never answered since the Source
	// was created (a wrong address, Kafka not running): they then fail
	// with ErrUnreachable. Default DefaultTimeout (10s).
	Timeout time.Duration
	// RetryTimeout bounds how long a call, or a read that makes no
	// progress, retries errors that may pass: a partition without a leader
	// while Kafka elects one, a leader that moved, a broker that crashed or
	// restarts. While it waits it logs a warning naming the partitions
	// without a leader and the brokers that answer; past it, the error
	// wraps ErrUnavailable and says the same. Errors that cannot pass, such
	// as a missing topic, fail at once. Default DefaultRetryTimeout (5m).
	RetryTimeout time.Duration
	// Logger receives warnings and debug logs; default slog.Default().
	Logger *slog.Logger
	// FetchAheadBytes bounds the records the readers of Source.Follow
	// hold, over all the partitions followed, each reader an equal share,
	// counting each record's own memory besides its key and value.
	// Default (0): 8 MiB a partition.
	FetchAheadBytes int64
	// FailOnDataLoss makes a read fail, with an error wrapping ErrDataLoss
	// that names the partition and the offsets, when Kafka deleted offsets
	// of its range (retention, DeleteRecords) before the read reached
	// them, as the query's failOnDataLoss option says. Default false: the
	// read logs a warning naming them and delivers what is left of the
	// range.
	FailOnDataLoss bool
}

// kafkaOption maps one Kafka client setting onto franz-go.
type kafkaOption struct {
	what  string // the expected value, for errors
	apply func(v string, o *clientConfig) error
}

// clientConfig is Config resolved into franz-go options.
type clientConfig struct {
	brokers       []string
	timeout       time.Duration
	retryTimeout  time.Duration
	log           *slog.Logger
	common        []kgo.Opt // every client
	consume       []kgo.Opt // partition readers only, made from fetch
	fetch         fetchConfig
	readCommitted bool
	fetchAhead    int64 // Config.FetchAheadBytes; 0: followMaxBytes a partition
	// failOnDataLoss is Config.FailOnDataLoss.
	failOnDataLoss bool
}

// fetchConfig sizes fetches, for the partition readers' clients and for
// ReadValues' own Fetch requests.
type fetchConfig struct {
	maxBytes, partitionMaxBytes, minBytes int32
	maxWait                               time.Duration
}

// fetchOption parses a fetch setting, an int32 of at least min, into the
// field of fetchConfig that field picks.
func fetchOption(what string, min int64, field func(*fetchConfig) *int32) kafkaOption {
	return kafkaOption{what: what, apply: func(v string, o *clientConfig) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < min {
			return errInvalid
		}
		*field(&o.fetch) = int32(n)
		return nil
	}}
}

func msOption(what string, opt func(time.Duration) kgo.Opt) kafkaOption {
	return kafkaOption{what: what, apply: func(v string, o *clientConfig) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return errInvalid
		}
		o.common = append(o.common, opt(time.Duration(n)*time.Millisecond))
		return nil
	}}
}

// errInvalid is returned by option parsers for a malformed value; resolve
// turns it into a user-facing error naming the expected value.
var errInvalid = errors.New("invalid value")

var kafkaOptions = map[string]kafkaOption{
	"bootstrap.servers": {what: "host:port[,host:port...]", apply: func(v string, o *clientConfig) error {
		brokers, err := ParseBrokers(v)
		if err != nil {
			return err
		}
		if len(o.brokers) > 0 && !slices.Equal(o.brokers, brokers) {
			return errorf(ErrInvalidConfig, "kafka: brokers are set twice, to %s and by kafka.bootstrap.servers to %s; set them once",
				strings.Join(o.brokers, ","), v)
		}
		o.brokers = brokers
		return nil
	}},
	"client.id": {what: "a client id", apply: func(v string, o *clientConfig) error {
		o.common = append(o.common, kgo.ClientID(v))
		return nil
	}},
	"fetch.max.bytes":           fetchOption("bytes > 0", 1, func(f *fetchConfig) *int32 { return &f.maxBytes }),
	"max.partition.fetch.bytes": fetchOption("bytes > 0", 1, func(f *fetchConfig) *int32 { return &f.partitionMaxBytes }),
	"fetch.min.bytes":           fetchOption("bytes >= 1", 1, func(f *fetchConfig) *int32 { return &f.minBytes }),
	"fetch.max.wait.ms": {what: "milliseconds >= 0", apply: func(v string, o *clientConfig) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return errInvalid
		}
		o.fetch.maxWait = time.Duration(n) * time.Millisecond
		return nil
	}},
	"isolation.level": {what: "read_uncommitted or read_committed", apply: func(v string, o *clientConfig) error {
		switch v {
		case "read_uncommitted":
			o.readCommitted = false
		case "read_committed":
			o.readCommitted = true
		default:
			return errInvalid
		}
		return nil
	}},
	"request.timeout.ms":                 msOption("milliseconds >= 0", kgo.RequestTimeoutOverhead),
	"connections.max.idle.ms":            msOption("milliseconds >= 0", kgo.ConnIdleTimeout),
	"metadata.max.age.ms":                msOption("milliseconds >= 0", kgo.MetadataMaxAge),
	"socket.connection.setup.timeout.ms": msOption("milliseconds >= 0", kgo.DialTimeout),
	"retry.backoff.ms": msOption("milliseconds >= 0", func(d time.Duration) kgo.Opt {
		return kgo.RetryBackoffFn(func(int) time.Duration { return d })
	}),
}

// unsupportedOptions are Kafka settings Spark rejects, with what to do instead.
var unsupportedOptions = map[string]string{
	"auto.offset.reset":  "set the startingOffsets source option instead",
	"enable.auto.commit": "offsets are tracked in the checkpoint, not committed to Kafka",
	"key.deserializer":   "keys are always read as bytes; cast them in the query",
	"value.deserializer": "values are always read as bytes; cast them in the query",
	"group.id":           "partitions are read directly, without a consumer group",
}

// SupportedOptions returns the "kafka.*" options (prefix stripped) that
// Config.Options accepts, sorted.
func SupportedOptions() []string {
	return sortedKeys(kafkaOptions)
}

// resolve validates c and turns it into franz-go options.
func (c Config) resolve() (clientConfig, error) {
	if c.FetchAheadBytes < 0 {
		return clientConfig{}, errorf(ErrInvalidConfig, "kafka: FetchAheadBytes is %d; it must be at least 0 (0: the default)", c.FetchAheadBytes)
	}
	o := clientConfig{timeout: c.Timeout, retryTimeout: c.RetryTimeout, log: c.Logger, fetchAhead: c.FetchAheadBytes, failOnDataLoss: c.FailOnDataLoss}
	if o.timeout <= 0 {
		o.timeout = DefaultTimeout
	}
	if o.retryTimeout <= 0 {
		o.retryTimeout = DefaultRetryTimeout
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if len(c.Brokers) > 0 {
		if err := validateBrokers(c.Brokers); err != nil {
			return clientConfig{}, err
		}
		o.brokers = slices.Clone(c.Brokers)
	}
	o.fetch = fetchConfig{maxBytes: defaultFetchMaxBytes, partitionMaxBytes: defaultFetchMaxPartitionBytes,
		minBytes: 1, maxWait: defaultFetchMaxWait}
	for _, name := range sortedKeys(c.Options) {
		v := strings.TrimSpace(c.Options[name])
		if why, ok := unsupportedOptions[name]; ok {
			return clientConfig{}, errorf(ErrInvalidConfig, "kafka: option kafka.%s is not supported: %s", name, why)
		}
		opt, ok := kafkaOptions[name]
		if !ok {
			return clientConfig{}, errorf(ErrInvalidConfig, "kafka: unknown option kafka.%s (supported: kafka.%s)",
				name, strings.Join(SupportedOptions(), ", kafka."))
		}
		if err := opt.apply(v, &o); err == errInvalid {
			return clientConfig{}, errorf(ErrInvalidConfig, "kafka: option kafka.%s=%q is invalid: want %s", name, v, opt.what)
		} else if err != nil {
			return clientConfig{}, err
		}
	}
	if len(o.brokers) == 0 {
		return clientConfig{}, errorf(ErrInvalidConfig, "kafka: no brokers given (set --brokers or kafka.bootstrap.servers, e.g. localhost:9092)")
	}
	o.common = append([]kgo.Opt{
		kgo.SeedBrokers(o.brokers...),
		kgo.WithLogger(kgoLogger{o.log}),
		kgo.DialTimeout(min(o.timeout, 10*time.Second)),
	}, o.common...)
	o.consume = []kgo.Opt{
		kgo.FetchMaxBytes(o.fetch.maxBytes),
		kgo.FetchMaxPartitionBytes(o.fetch.partitionMaxBytes),
		kgo.FetchMinBytes(o.fetch.minBytes),
		kgo.FetchMaxWait(o.fetch.maxWait),
		kgo.BrokerMaxReadBytes(2 * max(o.fetch.maxBytes, defaultFetchMaxBytes)),
		kgo.WithDecompressor(newDecompressor()),
	}
	if o.readCommitted {
		o.consume = append(o.consume, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	return o, nil
}

// ParseBrokers splits a comma-separated broker list ("s1:9092,s2:9092"),
// trimming spaces, and checks that each entry is host:port.
func ParseBrokers(s string) ([]string, error) {
	var brokers []string
	for b := range strings.SplitSeq(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		return nil, errorf(ErrInvalidConfig, "kafka: empty broker list %q (want host:port[,host:port...], e.g. localhost:9092)", s)
	}
	if err := validateBrokers(brokers); err != nil {
		return nil, err
	}
	return brokers, nil
}

func validateBrokers(brokers []string) error {
	for _, b := range brokers {
		host, port, err := net.SplitHostPort(b)
		n, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || host == "" || perr != nil || n == 0 {
			return errorf(ErrInvalidConfig, "kafka: broker %q is not host:port (e.g. localhost:9092)", b)
		}
	}
	return nil
}

// kgoLogger forwards franz-go's warnings and errors to slog, one level
// lower: franz-go warns about conditions it retries (a broker refusing
// connections, a leader moving), which this package reports as errors with
// a next step when they persist.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelDebug
	if level == kgo.LogLevelError {
		lvl = slog.LevelWarn
	}
	k.l.Log(context.Background(), lvl, "franz-go: "+msg, keyvals...)
}
