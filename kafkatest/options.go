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
	// brokerJVM are the brokers' JVM flags (heap, GC, JIT).
	brokerJVM []string
}

func newConfig(opts []Option) config {
	c := config{brokers: 3, logf: func(string, ...any) {}, brokerJVM: TestJVM}
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

// TestJVM are the brokers' default JVM flags: a small heap, the serial
// collector and the C1 compiler only, so that a broker starts in seconds
// and a test's cluster takes little of a small machine.
var TestJVM = []string{
	"-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
	"-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
}

// ServerJVM are the JVM flags of Kafka's own kafka-server-start.sh (its
// KAFKA_HEAP_OPTS and KAFKA_JVM_PERFORMANCE_OPTS defaults): a 1 GiB heap,
// G1 with 20 ms pause goals and the optimising compiler. Brokers start
// slower and run as a production broker does: benchmarks use these.
var ServerJVM = []string{
	"-Xmx1G", "-Xms1G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
	"-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
	"-XX:MaxInlineLevel=15", "-XX:+ExitOnOutOfMemoryError",
	"-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
}

// BrokerJVM sets the brokers' JVM flags on the process and docker backends
// (it has no effect on an external cluster). Default [TestJVM]; [ServerJVM]
// runs brokers as kafka-server-start.sh does.
func BrokerJVM(flags ...string) Option {
	return func(c *config) { c.brokerJVM = append([]string(nil), flags...) }
}
