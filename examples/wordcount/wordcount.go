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
	engine.RegisterJob(engine.Job{
		Name:        "wordcount-words",
		Description: `count the lowercased words of each line (split on \W+, like Kafka Streams' WordCountDemo)`,
		Build:       WordCounts,
	})
}

// Counts builds the word-count query over the topic p.Topic.
func Counts(s *engine.Session, p engine.JobParams) *engine.DataFrame {
	lines := readLines(s, p)
	words := lines.Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word"))
	return words.GroupBy(engine.Col("word")).Count()
}

// WordCounts builds the query of Kafka Streams' WordCountDemo over the topic
// p.Topic: lines lowercased and split on runs of non-word characters,
//
//	source.flatMapValues(value -> Arrays.asList(value.toLowerCase(Locale.getDefault()).split("\\W+")))
//	      .groupBy((key, value) -> value).count()
//
// with the empty words dropped. Java's String.split drops trailing empty
// strings and Spark's split keeps them; the demo still counts one empty word
// for a line that starts with a non-word character, this query none.
func WordCounts(s *engine.Session, p engine.JobParams) *engine.DataFrame {
	lines := readLines(s, p)
	words := lines.Select(engine.Explode(engine.Split(engine.Lower(engine.Col("value")), `\W+`)).As("word")).
		Filter(engine.Col("word").Ne(""))
	return words.GroupBy(engine.Col("word")).Count()
}

// readLines is the Kafka scan of both jobs, its values cast to strings.
func readLines(s *engine.Session, p engine.JobParams) *engine.DataFrame {
	r := s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", p.Brokers).
		Option("subscribe", p.Topic)
	if p.StartingOffsets != "" {
		r.Option("startingOffsets", p.StartingOffsets)
	}
	if p.MaxOffsetsPerTrigger > 0 {
		r.Option("maxOffsetsPerTrigger", strconv.FormatInt(p.MaxOffsetsPerTrigger, 10))
	}
	if p.FailOnDataLoss != nil {
		r.Option("failOnDataLoss", strconv.FormatBool(*p.FailOnDataLoss))
	}
	if p.KafkaRetryTimeout > 0 {
		r.Option("kafkaRetryTimeout", p.KafkaRetryTimeout.String())
	}
	return r.Load().SelectExpr("CAST(value AS STRING)")
}
