package kafkatest

// Option configures [Start] and [StartCluster].
type Option func(*config)

type topicSpec struct {
	name       string
	partitions int32
	rf         int16
}

type config struct {
	brokers int
	topics  []topicSpec
	logf    func(format string, args ...any)
}

func newConfig(opts []Option) config {
	c := config{brokers: 3, logf: func(string, ...any) {}}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Brokers sets the number of brokers. Default 3 (like s1, s2, s3). Each
// broker is also a KRaft controller and a voter. Values below 1 are treated
// as 1. With the external backend, the cluster must have at least n brokers.
func Brokers(n int) Option {
	return func(c *config) { c.brokers = max(n, 1) }
}

// Topic creates a topic once the cluster is up, and waits until every
// partition has a leader, as [Cluster.CreateTopic] does. Repeatable; topics
// are created in order. Default: no topics (auto creation is disabled on
// process-backed clusters).
func Topic(name string, partitions int32, replicationFactor int16) Option {
	return func(c *config) {
		c.topics = append(c.topics, topicSpec{name, partitions, replicationFactor})
	}
}

// Logf receives progress lines such as "resolving Kafka jars with Maven..."
// and "broker 2 up". Default: discarded by StartCluster; [Start] uses t.Logf
// unless Logf is given. f must be safe for concurrent use.
func Logf(f func(format string, args ...any)) Option {
	return func(c *config) {
		if f != nil {
			c.logf = f
		}
	}
}
