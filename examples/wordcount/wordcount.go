// Package wordcount is gostream's reference job: the Go counterpart of
// Spark's kafka_wordcount.py. It reads lines from Kafka, splits them on
// spaces and counts the words:
//
//	lines = spark.readStream.format("kafka")...load().selectExpr("CAST(value AS STRING)")
//	words = lines.select(explode(split(lines.value, ' ')).alias('word'))
//	wordCounts = words.groupBy('word').count()
//
// Importing the package registers the job as "wordcount", which is what
// `gostream submit wordcount` runs.
package wordcount

import (
	_ "embed"
	"strconv"

	"github.com/gostream/gostream/engine"
)

// Sample is a small web-server log, the zero-setup input of
// `gostream submit wordcount`.
//
//go:embed sample.log
var Sample []byte

func init() {
	engine.RegisterJob(engine.Job{
		Name:        "wordcount",
		Description: "count the words of each line of a topic (split on ' ', like Spark's kafka_wordcount.py)",
		Build:       Counts,
	})
}

// Counts builds the word-count query over the topic p.Topic.
func Counts(s *engine.Session, p engine.JobParams) *engine.DataFrame {
	r := s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", p.Brokers).
		Option("subscribe", p.Topic)
	if p.StartingOffsets != "" {
		r.Option("startingOffsets", p.StartingOffsets)
	}
	if p.MaxOffsetsPerTrigger > 0 {
		r.Option("maxOffsetsPerTrigger", strconv.FormatInt(p.MaxOffsetsPerTrigger, 10))
	}
	lines := r.Load().Select(engine.Col("value").Cast(engine.String))
	words := lines.Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word"))
	return words.GroupBy(engine.Col("word")).Count()
}
