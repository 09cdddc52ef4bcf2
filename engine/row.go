package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gostream/gostream/operators"
)

// Row is one output row, holding plain Go values: nil (null), string,
// []byte, int64 (Long and Int columns), float64, bool, time.Time or []any.
//
// Read a column by name (case-insensitive, as in Spark) with the typed
// getters, named after Spark's Row.getString, getLong...: each returns an
// error wrapping ErrNoColumn for a column the row lacks, ErrNull for a null
// value and ErrColumnType for a value of another type. fmt prints a row as
// PySpark does: Row(word='a', count=3).
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

// Get returns the named column's value (case-insensitive), or nil if it is
// null or the row has no such column.
func (r Row) Get(name string) any {
	v, _ := r.lookup(name)
	return v
}

// IsNull reports whether the named column is null or missing.
func (r Row) IsNull(name string) bool { return r.Get(name) == nil }

func (r Row) lookup(name string) (any, bool) {
	for i, n := range r.names {
		if strings.EqualFold(n, name) {
			return r.values[i], true
		}
	}
	return nil, false
}

// getAs returns the named column as a T.
func getAs[T any](r Row, name string) (T, error) {
	var zero T
	v, ok := r.lookup(name)
	switch {
	case !ok:
		return zero, fmt.Errorf("%w %q: the row has columns [%s]", ErrNoColumn, name, strings.Join(r.names, ", "))
	case v == nil:
		return zero, fmt.Errorf("%w: column %q", ErrNull, name)
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("%w: column %q is %T, not %T", ErrColumnType, name, v, zero)
	}
	return t, nil
}

// GetString returns the named String column.
func (r Row) GetString(name string) (string, error) { return getAs[string](r, name) }

// GetLong returns the named Long or Int column.
func (r Row) GetLong(name string) (int64, error) { return getAs[int64](r, name) }

// GetDouble returns the named Double column.
func (r Row) GetDouble(name string) (float64, error) { return getAs[float64](r, name) }

// GetBoolean returns the named Boolean column.
func (r Row) GetBoolean(name string) (bool, error) { return getAs[bool](r, name) }

// GetBinary returns the named Binary column.
func (r Row) GetBinary(name string) ([]byte, error) { return getAs[[]byte](r, name) }

// GetTimestamp returns the named Timestamp column, in UTC.
func (r Row) GetTimestamp(name string) (time.Time, error) { return getAs[time.Time](r, name) }

// String formats the row as PySpark's Row repr: Row(word='a', count=3).
// Values are written as Python writes them: strings quoted with escapes,
// None for null, True and False, floats with a decimal point (3.0, 1e+20,
// nan, inf), binaries as bytearray(b'...'), timestamps as
// datetime.datetime(2024, 1, 2, 3, 4, 5, 6) in UTC, arrays as [...].
func (r Row) String() string {
	b := []byte("Row(")
	for i, n := range r.names {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, n...)
		b = append(b, '=')
		b = appendPython(b, r.values[i])
	}
	return string(append(b, ')'))
}

// appendPython appends Python's repr of v.
func appendPython(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "None"...)
	case string:
		return appendPyString(b, x, false)
	case []byte:
		b = append(b, "bytearray(b"...)
		return append(appendPyString(b, string(x), true), ')')
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		return appendPyFloat(b, x)
	case bool:
		if x {
			return append(b, "True"...)
		}
		return append(b, "False"...)
	case time.Time:
		t := x.UTC()
		b = fmt.Appendf(b, "datetime.datetime(%d, %d, %d, %d, %d", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute())
		us := t.Nanosecond() / 1000
		if t.Second() != 0 || us != 0 {
			b = fmt.Appendf(b, ", %d", t.Second())
		}
		if us != 0 {
			b = fmt.Appendf(b, ", %d", us)
		}
		return append(b, ')')
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendPython(b, e)
		}
		return append(b, ']')
	}
	return fmt.Append(b, v)
}

// appendPyFloat is Python's repr of a float: the shortest form that reads
// back, with a decimal point, in exponent form below 1e-4 and from 1e16.
func appendPyFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "nan"...)
	case math.IsInf(f, 1):
		return append(b, "inf"...)
	case math.IsInf(f, -1):
		return append(b, "-inf"...)
	}
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e16) {
		return strconv.AppendFloat(b, f, 'e', -1, 64)
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, 'f', -1, 64)
	if !strings.Contains(string(b[n:]), ".") {
		b = append(b, ".0"...)
	}
	return b
}

// appendPyString is Python's repr of a str (or, with bytes, of a bytes
// object): in single quotes, or double quotes if it holds a single quote
// and no double quote; backslash, the quote and control characters
// escaped; bytes escapes every non-ASCII byte as \xNN.
func appendPyString(b []byte, s string, bytes bool) []byte {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	b = append(b, q)
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if !bytes {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		switch {
		case r == '\\' || r == rune(q):
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < 0x20 || r == 0x7f || (bytes && r >= 0x80):
			b = fmt.Appendf(b, `\x%02x`, r)
		case !bytes && !unicode.IsPrint(r):
			switch {
			case r < 0x100:
				b = fmt.Appendf(b, `\x%02x`, r)
			case r < 0x10000:
				b = fmt.Appendf(b, `\u%04x`, r)
			default:
				b = fmt.Appendf(b, `\U%08x`, r)
			}
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, q)
}
