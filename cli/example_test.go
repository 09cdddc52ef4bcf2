package cli_test

import (
	"log"

	"github.com/gostream/gostream/cli"
	"github.com/gostream/gostream/engine"
)

// A program with a job of its own: `prog submit errors` counts the lines of
// a topic that contain ERROR, and every gostream command works as in
// gostream. examples/levels is such a program, with its test.
func Example() {
	err := engine.RegisterJob(engine.Job{
		Name:        "errors",
		Description: "count the lines that contain ERROR",
		Build: func(s *engine.Session, p engine.JobParams) *engine.DataFrame {
			lines := s.ReadKafka(engine.KafkaOptions{
				BootstrapServers: p.Brokers,
				Subscribe:        []string{p.Topic},
				StartingOffsets:  p.StartingOffsets,
			}).SelectExpr("CAST(value AS STRING)")
			return lines.Filter(engine.Col("value").Contains("ERROR")).GroupBy().Count()
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	cli.Main()
}
