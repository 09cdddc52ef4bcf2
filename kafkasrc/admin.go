package kafkasrc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Admin manages topics. It is safe for concurrent use.
type Admin struct {
	cl           *kgo.Client
	adm          *kadm.Client
	log          *slog.Logger
	brokers      []string
	timeout      time.Duration // per attempt, and for a cluster that never answered
	retryTimeout time.Duration // for errors that may pass
	retryHint    string        // how to wait longer, for the error of a call that gave up
	// readCommitted makes latest offsets the last stable offset.
	readCommitted bool
	// answered is set once a broker answered a request: a cluster that
	// never did is reported unreachable after timeout, not after
	// retryTimeout.
	answered atomic.Bool
}

// TopicInfo describes a topic.
type TopicInfo struct {
	Name              string
	ReplicationFactor int
	Partitions        []PartitionInfo // sorted by partition
}

// PartitionInfo describes one partition of a topic.
type PartitionInfo struct {
	Partition int32
	Leader    int32 // broker id, -1 when there is none
	Replicas  []int32
	ISR       []int32
	Earliest  int64 // log start offset
	Latest    int64 // high watermark
}

// NewAdmin returns an Admin for the brokers (host:port). A call retries
// errors that may pass (a partition without a leader, a broker
// restarting) for up to timeout (DefaultTimeout when 0), then fails with an
// error wrapping ErrUnavailable that names the brokers that answer and the
// partitions without a leader, or ErrUnreachable when no broker answered.
// NewAdmin itself does not dial.
func NewAdmin(brokers []string, timeout time.Duration) (*Admin, error) {
	cc, err := Config{Brokers: brokers, Timeout: timeout}.resolve()
	if err != nil {
		return nil, err
	}
	a, err := newAdmin(cc)
	if err != nil {
		return nil, err
	}
	a.retryBriefly()
	return a, nil
}

func newAdmin(cc clientConfig) (*Admin, error) {
	a := new(Admin)
	// kadm serves metadata from a cache younger than MetadataMinAge (5s by
	// default): keep it short so topic changes are seen promptly.
	opts := append(slices.Clone(cc.common), kgo.MetadataMinAge(100*time.Millisecond), kgo.WithHooks(answerHook{a}))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, wrapf(ErrInvalidConfig, err, "kafka: creating client: %v", err)
	}
	a.init(cl, cc)
	return a, nil
}

// adminFor returns an Admin using cl whose calls retry for cc.timeout, as
// NewAdmin's; closing the Admin closes cl.
func adminFor(cl *kgo.Client, cc clientConfig) *Admin {
	a := new(Admin)
	a.init(cl, cc)
	a.retryBriefly()
	return a
}

func (a *Admin) init(cl *kgo.Client, cc clientConfig) {
	a.cl, a.adm, a.log = cl, kadm.NewClient(cl), cc.log
	a.adm.SetTimeoutMillis(int32(cc.timeout.Milliseconds()))
	a.brokers, a.timeout, a.retryTimeout, a.readCommitted = cc.brokers, cc.timeout, cc.retryTimeout, cc.readCommitted
	a.retryHint = fmt.Sprintf("to wait longer than %v, set the source option kafkaRetryTimeout or gostream submit --kafka-retry-timeout", cc.retryTimeout)
}

// retryBriefly makes calls retry errors that may pass for a.timeout, not
// for the retry timeout of a query's source.
func (a *Admin) retryBriefly() {
	a.retryTimeout, a.retryHint = a.timeout, "retry once they recover"
}

// answerHook notes that a broker answered a request of the Admin's client.
type answerHook struct{ a *Admin }

func (h answerHook) OnBrokerE2E(_ kgo.BrokerMetadata, _ int16, e2e kgo.BrokerE2E) {
	if e2e.Err() == nil {
		h.a.answered.Store(true)
	}
}

// Close releases the Admin's connections.
func (a *Admin) Close() { a.cl.Close() }

func (a *Admin) brokerList() string { return strings.Join(a.brokers, ",") }

// call runs fn, each attempt within a.timeout (less at the end of the
// retry budget), until it succeeds or fails for good: errors that may pass
// are retried as retrier.wait says. what names the call and topics the
// topics it is about, for the warnings and the error of a call that gives
// up.
func (a *Admin) call(ctx context.Context, what string, topics []string, fn func(ctx context.Context) error) error {
	r := a.retrier(what, topics)
	for {
		actx, cancel := context.WithTimeout(ctx, r.attemptTimeout())
		err := fn(actx)
		cancel()
		if err == nil {
			a.answered.Store(true)
			return nil
		}
		if err := r.wait(ctx, err); err != nil {
			return err
		}
	}
}

func (a *Admin) unknownTopic(topic string) error {
	return errorf(ErrUnknownTopic, "kafka: topic %q does not exist on %s (create it: gostream topics create %s --partitions 3 --brokers %s)",
		topic, a.brokerList(), topic, a.brokerList())
}

// validTopic matches Kafka's legal topic names.
var validTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// checkTopicName returns an error wrapping ErrInvalidConfig if name is not
// a legal Kafka topic name, without asking a broker.
func checkTopicName(name string) error {
	if !validTopic.MatchString(name) || name == "." || name == ".." {
		return errorf(ErrInvalidConfig, "kafka: invalid topic name %q (use 1-249 characters from a-z, A-Z, 0-9, '.', '_', '-')", name)
	}
	return nil
}

// CreateTopic creates a topic with the given partitions (>= 1), replication
// factor (>= 1, or -1 for the brokers' default) and topic configs (nil for
// none), and waits until every partition has a leader. An existing topic is
// an error wrapping ErrTopicExists.
func (a *Admin) CreateTopic(ctx context.Context, name string, partitions int32, rf int16, configs map[string]string) error {
	if err := checkTopicName(name); err != nil {
		return err
	}
	if partitions < 1 {
		return errorf(ErrInvalidConfig, "kafka: topic %q: partitions is %d; want 1 or more", name, partitions)
	}
	if rf < 1 && rf != -1 {
		return errorf(ErrInvalidConfig, "kafka: topic %q: replication factor is %d; want 1 or more", name, rf)
	}
	cfgs := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfgs[k] = &v
	}
	err := a.call(ctx, "creating topic "+name, nil, func(ctx context.Context) error {
		resp, err := a.adm.CreateTopic(ctx, partitions, rf, cfgs, name)
		if err != nil {
			return err
		}
		return resp.Err
	})
	switch {
	case errors.Is(err, kerr.TopicAlreadyExists):
		return wrapf(ErrTopicExists, err, "kafka: topic %q already exists on %s (inspect it: gostream topics describe %s --brokers %s, or delete it first)",
			name, a.brokerList(), name, a.brokerList())
	case errors.Is(err, kerr.InvalidReplicationFactor):
		return wrapf(ErrInvalidConfig, err, "kafka: cannot create topic %q with replication factor %d on %s: %v (use at most the number of brokers)",
			name, rf, a.brokerList(), err)
	case gaveUp(err):
		return err
	case err != nil:
		return fmt.Errorf("kafka: creating topic %q on %s: %w", name, a.brokerList(), err)
	}
	return a.waitFor(ctx, name, func(t kmsg.MetadataResponseTopic) bool {
		if t.ErrorCode != 0 || int32(len(t.Partitions)) != partitions {
			return false
		}
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 || p.Leader < 0 {
				return false
			}
		}
		return true
	})
}

// waitFor polls every broker for the topic's metadata until ok returns true
// for each, or a.timeout passes: a listing or describe that follows, from
// any broker, sees the topic as ok saw it.
func (a *Admin) waitFor(ctx context.Context, name string, ok func(kmsg.MetadataResponseTopic) bool) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if a.everyBroker(ctx, name, ok) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: topic %q on %s did not reach the expected state within %v; retry or check the brokers' logs", name, a.brokerList(), a.timeout)
		case <-tick.C:
		}
	}
}

// everyBroker reports whether ok holds for the topic's metadata as every
// broker of the cluster answers it.
func (a *Admin) everyBroker(ctx context.Context, name string, ok func(kmsg.MetadataResponseTopic) bool) bool {
	brokers, err := a.adm.ListBrokers(ctx)
	if err != nil || len(brokers) == 0 {
		return false
	}
	for _, b := range brokers {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, a.cl.Broker(int(b.NodeID)))
		if err != nil || len(resp.Topics) != 1 || !ok(resp.Topics[0]) {
			return false
		}
	}
	return true
}

// DeleteTopic deletes a topic and waits until the brokers no longer list it.
// A missing topic is an error wrapping ErrUnknownTopic.
func (a *Admin) DeleteTopic(ctx context.Context, name string) error {
	if err := checkTopicName(name); err != nil {
		return err
	}
	err := a.call(ctx, "deleting topic "+name, []string{name}, func(ctx context.Context) error {
		resp, err := a.adm.DeleteTopic(ctx, name)
		if err == nil {
			err = resp.Err
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) { // from the controller: final
			return a.unknownTopic(name)
		}
		return err
	})
	switch {
	case errors.Is(err, ErrUnknownTopic), gaveUp(err):
		return err
	case err != nil:
		return fmt.Errorf("kafka: deleting topic %q on %s: %w", name, a.brokerList(), err)
	}
	return a.waitFor(ctx, name, func(t kmsg.MetadataResponseTopic) bool {
		return t.ErrorCode == kerr.UnknownTopicOrPartition.Code
	})
}

// ListTopics returns every non-internal topic, sorted by name, with its
// partitions and their offsets.
func (a *Admin) ListTopics(ctx context.Context) ([]TopicInfo, error) {
	for attempt := 1; ; attempt++ {
		infos, err := a.describeAll(ctx)
		// A topic listed and then unknown is being created or deleted:
		// its partitions are not on every broker yet, or no longer.
		if !errors.Is(err, ErrUnknownTopic) || attempt == listAttempts {
			return infos, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(listRetryDelay):
		}
	}
}

// describeAll describes every non-internal topic. The names come from a
// metadata request of its own: the client's cached listing may predate a
// topic created since.
func (a *Admin) describeAll(ctx context.Context) ([]TopicInfo, error) {
	var names []string
	err := a.call(ctx, "listing topics", nil, func(ctx context.Context) error {
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, a.cl)
		if err != nil {
			return err
		}
		names = names[:0]
		for _, t := range resp.Topics {
			if t.Topic != nil && !t.IsInternal {
				names = append(names, *t.Topic)
			}
		}
		return nil
	})
	if err != nil {
		return nil, a.describeErr(err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	return a.describe(ctx, names...)
}

// How ListTopics waits out a topic being created or deleted.
const (
	listAttempts   = 10
	listRetryDelay = 200 * time.Millisecond
)

// DescribeTopic returns one topic's partitions, leaders, replicas, in-sync
// replicas and offsets. A missing topic is an error wrapping ErrUnknownTopic.
func (a *Admin) DescribeTopic(ctx context.Context, name string) (TopicInfo, error) {
	infos, err := a.describe(ctx, name)
	if err != nil {
		return TopicInfo{}, err
	}
	return infos[0], nil
}

// metadata returns the named topics, or all when names is empty. A missing
// topic is an error wrapping ErrUnknownTopic.
func (a *Admin) metadata(ctx context.Context, names ...string) (kadm.TopicDetails, error) {
	var tds kadm.TopicDetails
	err := a.call(ctx, "reading the metadata of "+topicList(names), names, func(ctx context.Context) (err error) {
		tds, err = a.adm.ListTopics(ctx, names...)
		return err
	})
	if err != nil {
		return nil, a.describeErr(err)
	}
	if err := a.topicErr(tds); err != nil {
		return nil, err
	}
	return tds, nil
}

// describe lists the named topics, or all when names is empty.
func (a *Admin) describe(ctx context.Context, names ...string) ([]TopicInfo, error) {
	for _, name := range names {
		if err := checkTopicName(name); err != nil {
			return nil, err
		}
	}
	tds, err := a.metadata(ctx, names...)
	if err != nil {
		return nil, err
	}
	if len(tds) == 0 {
		return nil, nil
	}
	earliest, latest, err := a.offsets(ctx, tds.Names())
	if err != nil {
		return nil, err
	}
	infos := make([]TopicInfo, 0, len(tds))
	for _, td := range tds.Sorted() {
		info := TopicInfo{Name: td.Topic}
		for _, p := range td.Partitions.Sorted() {
			info.ReplicationFactor = max(info.ReplicationFactor, len(p.Replicas))
			info.Partitions = append(info.Partitions, PartitionInfo{
				Partition: p.Partition,
				Leader:    p.Leader,
				Replicas:  p.Replicas,
				ISR:       p.ISR,
				Earliest:  earliest[td.Topic][p.Partition],
				Latest:    latest[td.Topic][p.Partition],
			})
		}
		infos = append(infos, info)
	}
	return infos, nil
}

func (a *Admin) describeErr(err error) error {
	if gaveUp(err) {
		return err
	}
	return fmt.Errorf("kafka: reading metadata from %s: %w", a.brokerList(), err)
}

// topicErr returns the first per-topic error in sorted order.
func (a *Admin) topicErr(tds kadm.TopicDetails) error {
	for _, td := range tds.Sorted() {
		switch {
		case errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			return a.unknownTopic(td.Topic)
		case td.Err != nil:
			return fmt.Errorf("kafka: topic %q on %s: %w", td.Topic, a.brokerList(), td.Err)
		}
	}
	return nil
}

// offsets returns the log start offsets and the high watermarks (the last
// stable offsets under read_committed) of every partition of the topics.
func (a *Admin) offsets(ctx context.Context, topics []string) (earliest, latest Offsets, err error) {
	if len(topics) == 0 {
		return nil, nil, errorf(ErrInvalidConfig, "kafka: no topics to list offsets for (subscribe to at least one topic)")
	}
	for _, t := range topics {
		if err := checkTopicName(t); err != nil {
			return nil, nil, err
		}
	}
	err = a.call(ctx, "listing offsets of "+topicList(topics), topics, func(ctx context.Context) error {
		starts, err := a.adm.ListStartOffsets(ctx, topics...)
		if err != nil {
			return err
		}
		list := a.adm.ListEndOffsets
		if a.readCommitted {
			list = a.adm.ListCommittedOffsets
		}
		ends, err := list(ctx, topics...)
		if err != nil {
			return err
		}
		if earliest, err = a.listed(starts); err != nil {
			return err
		}
		if latest, err = a.listed(ends); err != nil {
			return err
		}
		dropUnpaired(earliest, latest)
		return nil
	})
	switch {
	case err == nil:
		return earliest, latest, nil
	case errors.Is(err, ErrUnknownTopic), gaveUp(err):
		return nil, nil, err
	}
	return nil, nil, fmt.Errorf("kafka: listing offsets of %s on %s: %w", strings.Join(topics, ","), a.brokerList(), err)
}

// dropUnpaired removes from a the partitions b lacks and from b those a
// lacks. The start and end offsets are two listings, each from the
// metadata of its time: a partition added to a topic in between is in the
// second only, until the next listing finds it in both.
func dropUnpaired(a, b Offsets) {
	for _, pair := range [][2]Offsets{{a, b}, {b, a}} {
		for topic, parts := range pair[0] {
			for p := range parts {
				if _, ok := pair[1].Get(topic, p); !ok {
					delete(parts, p)
				}
			}
			if len(parts) == 0 {
				delete(pair[0], topic)
			}
		}
	}
}

// gaveUp tells whether err is a call's final report on the cluster, which
// callers return as is.
func gaveUp(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrUnavailable)
}

func topicList(topics []string) string {
	if len(topics) == 0 {
		return "all topics"
	}
	return strings.Join(topics, ",")
}

func (a *Admin) listed(l kadm.ListedOffsets) (Offsets, error) {
	o := make(Offsets, len(l))
	for _, topic := range sortedKeys(l) {
		for _, p := range sortedKeys(l[topic]) {
			lo := l[topic][p]
			switch {
			case p < 0 && errors.Is(lo.Err, kerr.UnknownTopicOrPartition): // from the metadata: no such topic
				return nil, a.unknownTopic(topic)
			case p < 0 && lo.Err != nil:
				return nil, fmt.Errorf("topic %q: %w", topic, lo.Err)
			case lo.Err != nil: // UNKNOWN_TOPIC_OR_PARTITION here is a new leader still loading the partition
				return nil, fmt.Errorf("%s/%d: %w", topic, p, lo.Err)
			}
			o.Set(topic, p, lo.Offset)
		}
	}
	return o, nil
}
