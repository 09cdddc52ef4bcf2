// Command levels is a gostream binary with a job of its own, built without
// a fork of cmd/gostream: it registers the job "levels", the lines of a
// log per level, and hands the command line to gostream's (cli.Main), so
//
//	go run ./examples/levels submit levels
//
// counts the levels of the built-in sample log on the embedded broker, and
// `submit levels --brokers s1:9092 --topic logs` on a real Kafka. Every
// gostream command (produce, consume, topics, worker, cluster) and the
// built-in jobs work as in gostream.
package main

import (
	"log"

	"github.com/gostream/gostream/cli"
	"github.com/gostream/gostream/engine"
)

func main() {
	if err := engine.RegisterJob(engine.Job{
		Name:        "levels",
		Description: "count the lines of each log level (the second field of lines like '2026-11-24T09:01:58Z WARN app ...')",
		Build:       Levels,
	}); err != nil {
		log.Fatal(err)
	}
	cli.Main()
}

// Levels counts the lines of topic p.Topic per level: the second
// space-separated field, when it is DEBUG, INFO, WARN or ERROR.
func Levels(s *engine.Session, p engine.JobParams) *engine.DataFrame {
	lines := s.ReadKafka(engine.KafkaOptions{
		BootstrapServers:     p.Brokers,
		Subscribe:            []string{p.Topic},
		StartingOffsets:      p.StartingOffsets,
		MaxOffsetsPerTrigger: p.MaxOffsetsPerTrigger,
		FailOnDataLoss:       p.FailOnDataLoss,
		KafkaRetryTimeout:    p.KafkaRetryTimeout,
	}).SelectExpr("CAST(value AS STRING)")
	levels := lines.Select(engine.Split(engine.Col("value"), " ").GetItem(1).As("level")).
		Filter(engine.Col("level").IsIn("DEBUG", "INFO", "WARN", "ERROR"))
	return levels.GroupBy(engine.Col("level")).Count()
}
