package engine

import (
	"fmt"
	"strings"

	"github.com/gostream/gostream/operators"
)

// Row is one output row, holding plain Go values: nil, string, []byte,
// int64, float64, bool, time.Time or []any.
type Row struct {
	names  []string
	values []any
}

func newRow(names []string, r operators.Row) Row {
	vals := make([]any, len(r))
	for i, v := range r {
		vals[i] = v.Go()
	}
	return Row{names: names, values: vals}
}

// Values are the row's values in column order.
func (r Row) Values() []any { return r.values }

// Columns are the column names.
func (r Row) Columns() []string { return r.names }

// Get returns the named column's value (case-insensitive), or nil.
func (r Row) Get(name string) any {
	for i, n := range r.names {
		if strings.EqualFold(n, name) {
			return r.values[i]
		}
	}
	return nil
}

// String returns the named column as a string ("" if null or absent).
func (r Row) String(name string) string {
	s, _ := r.Get(name).(string)
	return s
}

// Int64 returns the named column as an int64 (0 if null or absent).
func (r Row) Int64(name string) int64 {
	i, _ := r.Get(name).(int64)
	return i
}

// Float64 returns the named column as a float64 (0 if null or absent).
func (r Row) Float64(name string) float64 {
	f, _ := r.Get(name).(float64)
	return f
}

func (r Row) GoString() string {
	var b strings.Builder
	b.WriteString("Row(")
	for i, n := range r.names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%v", n, r.values[i])
	}
	b.WriteString(")")
	return b.String()
}
