package task_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
	"github.com/gostream/gostream/state"
)

// dedupPlan compiles dropDuplicates(columns...) over
// CAST(key AS STRING) AS k, CAST(value AS STRING) AS v.
func dedupPlan(t testing.TB, columns ...string) *operators.Dedup {
	t.Helper()
	scan := &planpb.Plan{Node: &planpb.Plan_KafkaScan{KafkaScan: &planpb.KafkaScan{Subscribe: []string{"logs"}}}}
	cast := func(c string) *planpb.Expr {
		return &planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: col(c), To: planpb.DataType_STRING}}}
	}
	kv := &planpb.Plan{Node: &planpb.Plan_Project{Project: &planpb.Project{Input: scan, Exprs: []*planpb.NamedExpr{
		{Expr: cast("key"), Name: "k"}, {Expr: cast("value"), Name: "v"},
	}}}}
	x, err := operators.CompileDropDuplicates(&planpb.DropDuplicates{Input: kv, Columns: columns})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// kv is a record: a nil key is a null one.
type kv struct{ k, v *string }

func rec(k, v string) kv  { return kv{&k, &v} }
func nullKey(v string) kv { return kv{nil, &v} }

// dedupBuckets runs a map task of x over recs and returns its buckets.
func dedupBuckets(t testing.TB, x *operators.Dedup, parts int, recs ...kv) [][]byte {
	t.Helper()
	ex, err := operators.PartitionExchange(parts)
	if err != nil {
		t.Fatal(err)
	}
	p := x.NewPartial(ex)
	entry, err := x.Input().New(p.Add)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		row := make(operators.Row, len(operators.KafkaSchema(false)))
		for i := range row {
			row[i] = operators.Null
		}
		if r.k != nil {
			row[0] = operators.Value{Kind: operators.KindBinary, B: []byte(*r.k)}
		}
		row[1] = operators.Value{Kind: operators.KindBinary, B: []byte(*r.v)}
		if err := entry(row); err != nil {
			t.Fatal(err)
		}
	}
	return p.Buckets()
}

// show prints rows as k=v, a null as null, sorted.
func show(rows []operators.Row) []string {
	var out []string
	for _, r := range rows {
		k := "null"
		if !r[0].IsNull() {
			k = string(r[0].B)
		}
		out = append(out, fmt.Sprintf("%s=%s", k, r[1].B))
	}
	slices.Sort(out)
	return out
}

// TestDedupReduce runs batches of two map tasks into two state partitions:
// each batch emits the first row of each key no earlier row had (a null key
// equals a null key, as in Spark), a re-run of a committed batch emits the
// same rows again and writes nothing, and dropDuplicates() keys on all
// columns.
func TestDedupReduce(t *testing.T) {
	const parts = 2
	forEachProvider(t, func(t *testing.T, p state.Provider) {
		x := dedupPlan(t, "K") // matched case-insensitively
		red := task.NewDedupReducer(x)
		stores := []state.Store{openStore(t, p, 0), openStore(t, p, 1)}
		run := func(batch int64, tasks ...[]kv) []string {
			t.Helper()
			var buckets [][][]byte
			for _, recs := range tasks {
				buckets = append(buckets, dedupBuckets(t, x, parts, recs...))
			}
			var all []operators.Row
			for i, st := range stores {
				var rows operators.RowBuffer
				res, err := red.Reduce(st, batch, partitionBuckets(buckets, i), task.ReduceOptions{Rows: &rows, Record: true})
				if err != nil {
					t.Fatalf("batch %d: %v", batch, err)
				}
				var states int64 // puts of the batch's changelog record
				err = state.EachWrite(res.Record, func(_, state []byte, del bool) error {
					if first, _ := binary.Varint(state); first != batch || del {
						return fmt.Errorf("a key's state says batch %d (deleted: %v)", first, del)
					}
					states++
					return nil
				})
				if err != nil {
					t.Fatalf("batch %d: %v", batch, err)
				}
				if res.Groups != int64(len(rows.Rows())) || states != res.Groups {
					t.Fatalf("batch %d: %d groups, %d rows, %d states", batch, res.Groups, len(rows.Rows()), states)
				}
				if st.Version() != batch {
					t.Fatalf("batch %d: partition %d at version %d", batch, i, st.Version())
				}
				all = append(all, rows.Rows()...)
			}
			return show(all)
		}
		batch1 := [][]kv{{rec("a", "7"), rec("c", "8"), nullKey("9"), rec("c", "10")}}
		steps := []struct {
			batch int64
			tasks [][]kv
			want  []string
		}{
			{0, [][]kv{{rec("a", "1"), rec("a", "2"), nullKey("3")}, {rec("b", "4"), nullKey("5"), rec("a", "6")}}, []string{"a=1", "b=4", "null=3"}},
			{1, batch1, []string{"c=8"}},
			{1, batch1, []string{"c=8"}}, // re-run: committed already
			{2, [][]kv{{rec("b", "11"), nullKey("12")}}, nil},
		}
		for _, s := range steps {
			if got := run(s.batch, s.tasks...); !slices.Equal(got, s.want) {
				t.Fatalf("batch %d: rows %v, want %v", s.batch, got, s.want)
			}
		}
		var keys int64
		for _, st := range stores {
			keys += st.Len()
		}
		if keys != 4 { // a, b, c, null
			t.Fatalf("state holds %d keys, want 4", keys)
		}
	})
	t.Run("all columns", func(t *testing.T) {
		x := dedupPlan(t)
		st := openStore(t, state.NewMemory(), 0)
		var rows operators.RowBuffer
		b := dedupBuckets(t, x, 1, rec("a", "1"), rec("a", "1"), rec("a", "2"), nullKey("1"), nullKey("1"))
		if _, err := task.NewDedupReducer(x).Reduce(st, 0, b, task.ReduceOptions{Rows: &rows}); err != nil {
			t.Fatal(err)
		}
		if got, want := show(rows.Rows()), []string{"a=1", "a=2", "null=1"}; !slices.Equal(got, want) {
			t.Fatalf("rows %v, want %v", got, want)
		}
	})
}

// TestDedupCompileErrors checks the analysis errors of dropDuplicates.
func TestDedupCompileErrors(t *testing.T) {
	scan := &planpb.Plan{Node: &planpb.Plan_KafkaScan{KafkaScan: &planpb.KafkaScan{Subscribe: []string{"logs"}}}}
	_, err := operators.CompileDropDuplicates(&planpb.DropDuplicates{Input: scan, Columns: []string{"nope"}})
	if !errors.Is(err, operators.ErrUnknownColumn) {
		t.Fatalf("unknown column: %v", err)
	}
	hdr := &planpb.Plan{Node: &planpb.Plan_KafkaScan{KafkaScan: &planpb.KafkaScan{Subscribe: []string{"logs"}, IncludeHeaders: true}}}
	if _, err := operators.CompileDropDuplicates(&planpb.DropDuplicates{Input: hdr}); !errors.Is(err, operators.ErrType) {
		t.Fatalf("headers column: %v", err)
	}
}
