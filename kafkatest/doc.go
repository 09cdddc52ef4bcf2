// Package kafkatest runs a real Apache Kafka cluster (KRaft mode) for tests
// and benchmarks.
//
// It starts Kafka 3.9.1 brokers, each also a controller and a voter, that
// listen on free ports of 127.0.0.1 and keep their data in a temporary
// directory removed on [Cluster.Close]. The environment variable
// GOSTREAM_KAFKA_BACKEND ([BackendEnv]) chooses how:
//
//   - "" or "auto" (the default): docker when a Docker engine answers
//     within 5 s, else process. The choice is logged.
//   - "docker": one container per broker, through testcontainers-go, of the
//     image named by GOSTREAM_KAFKA_IMAGE ([ImageEnv], default
//     [DefaultImage]) with host networking, so addresses are those of the
//     process backend. Containers are labelled with the host and process
//     that started them; Close removes them, and the next docker start
//     removes those a killed test process left. Without a registry,
//     scripts/kafka-image.sh builds an equivalent image from the same jars.
//   - "process": local JVMs (needs Java 17+ as java on PATH or under
//     JAVA_HOME, and Maven as mvn on PATH for the first run, which resolves
//     the jars from Maven Central into a cache, see [JarsDir]). Children are
//     killed with the test process, even by SIGKILL.
//   - "external": an already running cluster whose seed brokers are listed
//     in GOSTREAM_KAFKA_BROKERS as host:port,host:port. Nothing is started or
//     stopped; topics created through the Cluster are deleted on Close.
//
// A backend that is selected but unusable fails the start with an error
// that names what to install or set; nothing is skipped silently. Tests
// that need Kafka skip only under go test -short, by the caller's check of
// [testing.Short].
//
// # The process backend
//
//	GOSTREAM_KAFKA_BACKEND=process go test ./...
//
// needs java (17+) and, on the first run, mvn: the jars are resolved from
// Maven Central into ~/.cache/gostream/kafka-3.9.1/libs (or under
// $GOSTREAM_CACHE, see [JarsDir]). On Debian:
// apt-get install openjdk-17-jre-headless maven.
//
// # The docker backend
//
// With access to Docker Hub nothing is to prepare: the default image is the
// official apache/kafka. Without a registry (CI), build an equivalent image
// locally first:
//
//	eval "$(bash scripts/kafka-image.sh)"
//	GOSTREAM_KAFKA_BACKEND=docker go test ./...
//
// The script is idempotent. It installs Docker from Debian (docker.io) if
// dockerd is missing, starts dockerd --bridge=none --iptables=false if no
// engine answers (log in /tmp/gostream-dockerd.log), and builds
// gostream/kafka:3.9.1-<hash> if it is missing: a FROM scratch image with a
// jlink-built JRE 17, the glibc libraries it needs and the Kafka jars that
// [JarsDir] resolves, at the paths of the official image. The hash covers
// the jar list, the JDK, the module list and the script, so the image is
// rebuilt only when one of them changes. Its only output line is
//
//	export GOSTREAM_KAFKA_IMAGE=gostream/kafka:3.9.1-<hash> TESTCONTAINERS_RYUK_DISABLED=true
//
// (Ryuk, testcontainers' reaper, would need an image from a registry; this
// package removes its own containers.) Any other image with Java at
// /opt/java/openjdk/bin/java and the Kafka jars in /opt/kafka/libs runs
// too.
//
// # An existing cluster
//
//	GOSTREAM_KAFKA_BACKEND=external GOSTREAM_KAFKA_BROKERS=localhost:9092 go test ./...
//
// The cluster must have as many brokers as the tests ask for (3 by
// default), and the tests that use the console producer need Java. Every
// test uses topic names of its own, deleted when it ends.
//
// # In a test
//
//	func TestWordCount(t *testing.T) {
//		if testing.Short() {
//			t.Skip("needs Kafka")
//		}
//		c := kafkatest.Start(t, kafkatest.Brokers(3)) // stopped when the test ends
//		topic := kafkatest.UniqueTopic(t, "lines")
//		if err := c.CreateTopic(context.Background(), topic, 3, 2); err != nil {
//			t.Fatal(err)
//		}
//		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
//		// ...
//	}
//
// [StartCluster] starts a cluster to share from TestMain or a benchmark.
// Brokers run with [TestJVM] (a small heap, the serial collector, the C1
// compiler only), so they start in seconds; [BrokerJVM]([ServerJVM]...)
// runs them with kafka-server-start.sh's own settings, as the bench suite
// does. Test packages may run in parallel on any backend: ports are chosen
// free on 127.0.0.1 and [UniqueTopic] names never collide. ExampleStart is
// a complete round trip to copy, through franz-go and Kafka's console
// producer.
//
// Tests of broker failures kill a broker as a crash would and start it
// again on its data with [Cluster.KillBroker] and [Cluster.RestartBroker]
// (process and docker backends), and wait for its replicas with
// [Cluster.WaitInSync].
//
// kafkatest owns only the Kafka processes, containers and files it starts;
// it never touches a cluster's data beyond the topics and records the caller
// asks for.
package kafkatest
