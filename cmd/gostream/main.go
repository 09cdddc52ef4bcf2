// Command gostream runs Spark Structured Streaming-style jobs on Apache Kafka:
// submit runs a registered job, produce and consume move lines in and out of
// Kafka, topics manages topics, worker runs a member of a cluster of workers,
// cluster inspects one, jobs manages its jobs and kafka runs an in-memory
// broker for trying gostream on one machine. It is package cli's command
// line with the built-in jobs; a program of one's own with more jobs calls
// cli.Main the same way (see examples/levels).
package main

import "github.com/gostream/gostream/cli"

func main() { cli.Main() }
