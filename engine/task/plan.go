package task

import (
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

// Plan is a query's plan compiled for its tasks. It is safe for concurrent
// use: the per-task state lives in what its users create from it.
type Plan struct {
	// Narrow is the whole plan when it has no aggregation or
	// dropDuplicates; nil otherwise.
	Narrow *operators.Narrow
	// Agg is the plan's aggregation, and the narrow chain below it; nil
	// when the plan has none.
	Agg *operators.Aggregation
	// Dedup is the plan's dropDuplicates, and the narrow chain below it;
	// nil when the plan has none.
	Dedup *operators.Dedup
	// Scan is the plan's Kafka source.
	Scan *planpb.KafkaScan
}

// Compile compiles p. Its errors are the operators package's: a plan that
// does not type-check, or names what this binary does not know.
func Compile(p *planpb.Plan) (*Plan, error) {
	if a := p.GetAggregate(); a != nil {
		agg, err := operators.CompileAggregate(a)
		if err != nil {
			return nil, err
		}
		return &Plan{Agg: agg, Scan: agg.Input().Scan()}, nil
	}
	if d := p.GetDropDuplicates(); d != nil {
		x, err := operators.CompileDropDuplicates(d)
		if err != nil {
			return nil, err
		}
		return &Plan{Dedup: x, Scan: x.Input().Scan()}, nil
	}
	narrow, err := operators.CompileNarrow(p)
	if err != nil {
		return nil, err
	}
	return &Plan{Narrow: narrow, Scan: narrow.Scan()}, nil
}
