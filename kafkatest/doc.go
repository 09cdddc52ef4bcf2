// Package kafkatest runs a real Apache Kafka cluster (KRaft mode) for tests
// and benchmarks.
//
// By default it starts Kafka 3.9.1 brokers as local JVM processes, from jars
// that Maven resolves from Maven Central once and caches (see [JarsDir]). Each
// broker is also a controller; all of them are voters. Brokers listen on
// free ports of 127.0.0.1 and keep their data in a temporary directory that
// is removed on [Cluster.Close]. Children are killed with the test process,
// even if it is killed with SIGKILL.
//
// The backend is chosen by the environment variable GOSTREAM_KAFKA_BACKEND:
//
//   - "" , "auto" or "process": local JVM processes (needs Java 17+ as java
//     on PATH or under JAVA_HOME, and Maven as mvn on PATH for the first run).
//   - "external": an already running cluster whose seed brokers are listed
//     in GOSTREAM_KAFKA_BROKERS as host:port,host:port. Nothing is started or
//     stopped; topics created through the Cluster are deleted on Close.
//
// Typical use in a test:
//
//	c := kafkatest.Start(t, kafkatest.Topic("logs", 3, 2))
//	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
//
// kafkatest owns only the Kafka processes and files it starts; it never
// touches a cluster's data beyond the topics and records the caller asks for.
package kafkatest
