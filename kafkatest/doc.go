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
// that names what to install or set; nothing is skipped silently.
//
// Typical use in a test:
//
//	c := kafkatest.Start(t, kafkatest.Topic("logs", 3, 2))
//	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
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
