package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

func wordCountDF(s *Session, topic string, maxOffsets string) *DataFrame {
	lines := s.ReadStream().Format("kafka").Option("kafka.bootstrap.servers", "127.0.0.1:1").Option("subscribe", topic).
		Option("maxOffsetsPerTrigger", maxOffsets).Load().Select(Col("value").Cast(String))
	return lines.Select(Explode(Split(Col("value"), " ")).As("word")).GroupBy(Col("word")).Count()
}

// TestPlan: Plan returns the query Start would run and its options, for a
// driver elsewhere, without starting anything; the fingerprint ignores
// tunables; what cannot run elsewhere, or here, is refused.
func TestPlan(t *testing.T) {
	s := NewSession()
	p, err := wordCountDF(s, "logs", "100").WriteStream().OutputMode(Complete).Trigger(AvailableNow()).QueryName("wc").
		ShufflePartitions(8).Memory(128<<20).Format("console").Option("numRows", "5").Plan()
	if err != nil {
		t.Fatal(err)
	}
	if q := p.Query; q.Name != "wc" || q.OutputMode != Complete || q.ShufflePartitions != 8 || q.Plan.GetAggregate() == nil {
		t.Errorf("query %v", q)
	}
	want := map[string]string{"trigger": "available-now", "format": "console", "numrows": "5", "memory": "134217728"}
	for k, v := range want {
		if p.Options[k] != v {
			t.Errorf("option %s = %q; want %q (options %v)", k, p.Options[k], v, p.Options)
		}
	}
	for _, spec := range []string{"available-now", "once", "default", "1.5s"} {
		tr, err := ParseTrigger(spec)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParseTrigger(tr.spec()); err != nil || back != tr {
			t.Errorf("trigger %q: spec %q parses as %v, %v", spec, tr.spec(), back, err)
		}
	}

	tuned, err := wordCountDF(s, "logs", "999").WriteStream().OutputMode(Complete).Plan()
	if err != nil {
		t.Fatal(err)
	}
	other, err := wordCountDF(s, "other", "100").WriteStream().OutputMode(Complete).Plan()
	if err != nil {
		t.Fatal(err)
	}
	if tuned.Fingerprint != p.Fingerprint || other.Fingerprint == p.Fingerprint {
		t.Error("the fingerprint depends on maxOffsetsPerTrigger, or not on the topic")
	}

	for _, tc := range []struct {
		name string
		w    *DataStreamWriter
		want string
	}{
		{"a Go sink", wordCountDF(s, "logs", "1").WriteStream().OutputMode(Complete).ForeachBatch(func(context.Context, int64, []Row) error { return nil }), "Go sink"},
		{"the memory sink", wordCountDF(s, "logs", "1").WriteStream().OutputMode(Complete).Format("memory").QueryName("m"), "memory sink"},
		{"a bad console option", wordCountDF(s, "logs", "1").WriteStream().OutputMode(Complete).Option("numRows", "x"), "numRows"},
		{"an unknown function", s.ReadStream().Format("kafka").Option("kafka.bootstrap.servers", "b:1").Option("subscribe", "logs").Load().
			Filter(Udf("no_such_function", Col("value"))).WriteStream(), `no function "no_such_function"`},
		{"append with an aggregation", wordCountDF(s, "logs", "1").WriteStream(), "append output mode"},
	} {
		_, err := tc.w.Plan()
		if !errors.Is(err, ErrAnalysis) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Plan() = %v; want %v naming %q", tc.name, err, ErrAnalysis, tc.want)
		}
	}
	if err := CheckPlan(&planpb.Query{Name: "x", Plan: p.Query.Plan}); err != nil {
		t.Errorf("CheckPlan(wordcount) = %v", err)
	}
	bad := &planpb.Query{Name: "x", Plan: &planpb.Plan{Node: &planpb.Plan_Filter{Filter: &planpb.Filter{
		Input: p.Query.Plan.GetAggregate().Input, Condition: &planpb.Expr{Kind: &planpb.Expr_Call{Call: &planpb.Call{Function: "nope"}}},
	}}}}
	if err := CheckPlan(bad); !errors.Is(err, operators.ErrUnknownFunction) {
		t.Errorf("CheckPlan of an unknown built-in = %v; want %v", err, operators.ErrUnknownFunction)
	}
}
