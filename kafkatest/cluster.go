package kafkatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// topicTimeout bounds CreateTopic's wait for partition leaders when ctx
	// has no earlier deadline.
	topicTimeout = 60 * time.Second
	// consoleProducerMain is Kafka's console producer (in kafka_2.13 on 3.9).
	consoleProducerMain = "kafka.tools.ConsoleProducer"
)

// Cluster is a running Kafka cluster. Its methods are safe for concurrent
// use; after Close they return ErrClosed.
type Cluster struct {
	be    backend
	seeds []string
	dir   string // scratch files (process backend data, tool configs)
	logf  func(string, ...any)
	cl    *kgo.Client
	adm   *kadm.Client

	mu struct {
		sync.Mutex
		closed bool
		topics []string // created through this Cluster, in order
	}
	closeOnce sync.Once
	closeErr  error
}

// Start starts a cluster for the test t and registers its Close with
// t.Cleanup, reporting a failed Close with t.Errorf. If the cluster cannot
// start, Start fails the test with t.Fatal and a message naming the cause.
// Progress lines go to t.Logf unless [Logf] is given. Start honours t's
// deadline (go test -timeout) when t has one.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	ctx := context.Background()
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
	}
	opts = append([]Option{Logf(t.Logf)}, opts...)
	c, err := StartCluster(ctx, opts...)
	if err != nil {
		t.Fatalf("kafkatest.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("kafkatest: close cluster: %v", err)
		}
	})
	return c
}

// StartCluster starts a cluster (or connects to an external one, see the
// package doc), creates the topics given with [Topic], and returns once all
// brokers and topics are ready. ctx bounds the start only; the cluster runs
// until Close, which the caller must call. For use from TestMain and
// benchmarks; tests should use [Start].
func StartCluster(ctx context.Context, opts ...Option) (c *Cluster, err error) {
	cfg := newConfig(opts)
	kind, err := backendFromEnv(ctx, dockerUp, cfg.logf)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kafkatest-")
	if err != nil {
		return nil, fmt.Errorf("kafkatest: create temp dir (set TMPDIR to a writable dir): %w", err)
	}
	begin := time.Now()
	var be backend
	switch kind {
	case backendExternal:
		be, err = startExternal(ctx, cfg, dir)
	case backendDocker:
		be, err = startDocker(ctx, cfg, dir)
	default:
		be, err = startProcess(ctx, cfg, dir)
	}
	if err != nil {
		return nil, err // dir stays for its broker logs, which the error names
	}
	c = &Cluster{be: be, seeds: be.addrs(), dir: dir, logf: cfg.logf}
	defer func() {
		if err != nil {
			_ = c.Close()
			c = nil
		}
	}()
	c.cl, err = kgo.NewClient(kgo.SeedBrokers(c.seeds...))
	if err != nil {
		return nil, fmt.Errorf("kafkatest: admin client for %v: %w", c.seeds, err)
	}
	c.adm = kadm.NewClient(c.cl)
	for _, tp := range cfg.topics {
		if err := c.CreateTopic(ctx, tp.name, tp.partitions, tp.rf); err != nil {
			return nil, err
		}
	}
	cfg.logf("kafkatest: cluster of %d brokers ready at %s in %v",
		cfg.brokers, c.BootstrapServers(), time.Since(begin).Round(time.Millisecond))
	return c, nil
}

// Addrs returns the seed brokers as "host:port" (on the process backend,
// "127.0.0.1:port", one per broker). The caller may modify the slice.
func (c *Cluster) Addrs() []string { return slices.Clone(c.seeds) }

// BootstrapServers returns Addrs joined with commas, the form of Kafka's
// bootstrap.servers and Spark's kafka.bootstrap.servers.
func (c *Cluster) BootstrapServers() string { return strings.Join(c.seeds, ",") }

func (c *Cluster) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return ErrClosed
	}
	return nil
}

// CreateTopic creates a topic and waits until every broker reports a leader
// for every partition, so clients can produce at once. The wait is bounded
// by ctx and by one minute. An existing topic is an error wrapping ErrTopic
// and kerr.TopicAlreadyExists.
func (c *Cluster) CreateTopic(ctx context.Context, name string, partitions int32, rf int16) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if _, err := c.adm.CreateTopic(ctx, partitions, rf, nil, name); err != nil {
		hint := ""
		if errors.Is(err, kerr.InvalidReplicationFactor) {
			hint = fmt.Sprintf(" (the cluster has %d brokers; start more with Brokers(n))", len(c.seeds))
		}
		return fmt.Errorf("%w: create topic %q with %d partitions, replication factor %d: %w%s",
			ErrTopic, name, partitions, rf, err, hint)
	}
	c.mu.Lock()
	c.mu.topics = append(c.mu.topics, name)
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, topicTimeout)
	defer cancel()
	var last string
	for {
		ok, state, err := c.leadersEverywhere(ctx, name, partitions)
		if ok {
			return nil
		}
		last = state
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: topic %q: not every partition has a leader on every broker: %v (last: %s)",
				ErrNotReady, name, ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// leadersEverywhere asks every broker for the topic's metadata and reports
// whether all of them know all partitions with a leader; otherwise state
// says what is missing.
func (c *Cluster) leadersEverywhere(ctx context.Context, topic string, partitions int32) (bool, string, error) {
	brokers, err := c.adm.ListBrokers(ctx)
	if err != nil {
		return false, "", err
	}
	for _, b := range brokers {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, c.cl.Broker(int(b.NodeID)))
		if err != nil {
			return false, "", fmt.Errorf("metadata from broker %d: %w", b.NodeID, err)
		}
		if len(resp.Topics) != 1 {
			return false, fmt.Sprintf("broker %d returned %d topics", b.NodeID, len(resp.Topics)), nil
		}
		t := resp.Topics[0]
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return false, fmt.Sprintf("broker %d: %v", b.NodeID, err), nil
		}
		if int32(len(t.Partitions)) != partitions {
			return false, fmt.Sprintf("broker %d knows %d of %d partitions", b.NodeID, len(t.Partitions), partitions), nil
		}
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil || p.Leader < 0 {
				return false, fmt.Sprintf("broker %d: partition %d has no leader (%v)", b.NodeID, p.Partition, err), nil
			}
		}
	}
	return len(brokers) > 0, "no brokers listed", nil
}

// KillBroker kills broker id with SIGKILL, as a crash would: no controlled
// shutdown, no leadership handed over, its files left as they are. It
// returns once the broker's process (or container) is gone. Broker ids run
// from 1 to the number of brokers, and broker id listens at Addrs()[id-1];
// they are the node ids Kafka's metadata reports. The external backend
// cannot kill brokers: its error wraps ErrBackend, as does killing a broker
// twice.
func (c *Cluster) KillBroker(id int) error {
	ctl, err := c.control()
	if err != nil {
		return err
	}
	return ctl.killBroker(id)
}

// RestartBroker starts broker id, killed by KillBroker, again with its data
// and ports, and waits until every broker lists it (it is registered and
// unfenced): clients can reach it. Its replicas may still be catching up;
// [Cluster.WaitInSync] waits for them. The wait is bounded by ctx and three
// minutes. Restarting a running broker is an error wrapping ErrBackend; a
// broker that exits while starting, one wrapping ErrBrokerExited.
func (c *Cluster) RestartBroker(ctx context.Context, id int) error {
	ctl, err := c.control()
	if err != nil {
		return err
	}
	return ctl.restartBroker(ctx, id)
}

func (c *Cluster) control() (brokerControl, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	ctl, ok := c.be.(brokerControl)
	if !ok {
		return nil, fmt.Errorf("%w: the external backend cannot kill or restart brokers (use %s=process or docker)", ErrBackend, BackendEnv)
	}
	return ctl, nil
}

// WaitInSync waits until every partition of the topics has a leader and all
// its replicas in sync, as after a broker restarted and caught up. The wait
// is bounded by ctx; its error wraps ErrNotReady and names a partition that
// is not in sync.
func (c *Cluster) WaitInSync(ctx context.Context, topics ...string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	for {
		last, err := outOfSync(ctx, c.cl, topics)
		if err != nil {
			last = err.Error()
		}
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: partitions not in sync: %v (last: %s)", ErrNotReady, ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// outOfSync asks the cluster for the topics' metadata, bypassing the
// client's cache, and describes the first partition without a leader or
// with a replica out of sync; "" when there is none.
func outOfSync(ctx context.Context, cl *kgo.Client, topics []string) (string, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return "", err
	}
	if len(resp.Topics) != len(topics) {
		return fmt.Sprintf("%d topics in the metadata, want %d", len(resp.Topics), len(topics)), nil
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return fmt.Sprintf("topic %q: %v", *t.Topic, err), nil
		}
		for _, p := range t.Partitions {
			if p.Leader < 0 || len(p.ISR) < len(p.Replicas) {
				return fmt.Sprintf("%s/%d: leader %d, replicas %v, in sync %v", *t.Topic, p.Partition, p.Leader, p.Replicas, p.ISR), nil
			}
		}
	}
	return "", nil
}

// DeleteRecords deletes the records of a partition before offset before,
// advancing its log start offset to before, as Kafka's kafka-delete-records
// does. Consumers then see the earlier offsets as lost data.
func (c *Cluster) DeleteRecords(ctx context.Context, topic string, partition int32, before int64) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: topic, Partition: partition, At: before, LeaderEpoch: -1})
	resps, err := c.adm.DeleteRecords(ctx, offs)
	if err == nil {
		if r, ok := resps.Lookup(topic, partition); !ok {
			err = errors.New("no response for the partition")
		} else {
			err = r.Err
		}
	}
	if err != nil {
		return fmt.Errorf("%w: delete records of %s[%d] before offset %d: %w (does the partition exist and hold that offset?)",
			ErrTopic, topic, partition, before, err)
	}
	return nil
}

// ConsoleProduce pipes input, one record per line, into topic through
// Kafka's own kafka.tools.ConsoleProducer, run with -Xmx256m in a container
// of the cluster's image on the docker backend, else as a local JVM from the
// jars of [JarsDir]. props are producer properties such as "compression.type":
// "gzip" or "linger.ms": "5" (passed as --producer-property, except
// compression.type, which goes to --compression-codec because the tool
// overrides the property). Returns once the tool exits; an error carries the
// tool's output. The topic must exist. The jars are resolved on first use
// with the external backend.
func (c *Cluster) ConsoleProduce(ctx context.Context, topic string, input io.Reader, props map[string]string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	m, err := c.adm.Metadata(ctx, topic)
	if err != nil {
		return fmt.Errorf("%w: metadata for topic %q: %w", ErrConsoleProducer, topic, err)
	}
	if td, ok := m.Topics[topic]; !ok || td.Err != nil {
		return fmt.Errorf("%w: topic %q not found (create it with CreateTopic or the Topic option): %v",
			ErrConsoleProducer, topic, td.Err)
	}
	args := []string{"--bootstrap-server", c.BootstrapServers(), "--topic", topic}
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if k == "compression.type" {
			args = append(args, "--compression-codec", props[k])
			continue
		}
		args = append(args, "--producer-property", k+"="+props[k])
	}
	out, err := c.be.runTool(ctx, consoleProducerMain, input, args...)
	// The tool logs failed sends through its callback and still exits 0.
	if err == nil && bytes.Contains(out, []byte(" ERROR ")) {
		err = errors.New("it logged errors")
	}
	if err != nil {
		return fmt.Errorf("%w: %s to topic %q: %w; output:\n%s",
			ErrConsoleProducer, consoleProducerMain, topic, err, tail(out, logTailBytes))
	}
	return nil
}

// Close stops the cluster: brokers are killed (SIGKILL) and their files
// removed. A graceful stop would protect only the files Close deletes, and
// it is slow when the whole quorum stops at once: the last controller waits
// 5 s (fixed in KafkaRaftClient) for a resignation no voter is left to
// acknowledge, longer on a loaded machine. With the external backend,
// Close deletes the topics created through this Cluster instead. Close is idempotent and safe
// to call concurrently; every call returns the first call's result.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.mu.closed = true
		topics := slices.Clone(c.mu.topics)
		c.mu.Unlock()

		var errs []error
		if c.be.persistent() && len(topics) > 0 && c.adm != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			resps, err := c.adm.DeleteTopics(ctx, topics...)
			cancel()
			if err == nil {
				err = resps.Error()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("kafkatest: delete topics %v: %w", topics, err))
			}
		}
		if c.cl != nil {
			c.cl.Close()
		}
		start := time.Now()
		if err := c.be.stop(); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("kafkatest: remove %s: %w", c.dir, err))
		}
		c.logf("kafkatest: cluster stopped in %v", time.Since(start).Round(time.Millisecond))
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

var topicSeq atomic.Uint64

// UniqueTopic returns a topic name unique to this call: prefix, the test's
// name, a sequence number and random hex, e.g.
// "logs-TestWordCount-1-9f2c4a1e". Characters Kafka does not allow in topic
// names become '-', and the name is cut to Kafka's 249-character limit.
func UniqueTopic(t testing.TB, prefix string) string {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	head := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, prefix+"-"+t.Name())
	suffix := fmt.Sprintf("-%d-%s", topicSeq.Add(1), hex.EncodeToString(r[:]))
	const maxLen = 249 // Kafka's limit
	if len(head)+len(suffix) > maxLen {
		head = head[:maxLen-len(suffix)]
	}
	return head + suffix
}
