package operators

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/gostream/gostream/proto/planpb"
)

// Kind is the runtime representation of a Value.
type Kind uint8

// The kinds of Value. INT and LONG columns are both KindLong.
const (
	KindNull Kind = iota
	KindString
	KindBinary
	KindLong
	KindDouble
	KindBool
	KindTimestamp // microseconds since the Unix epoch, in I
	KindArray     // elements in A
	KindStruct    // fields in A
)

// Value is one cell. Strings and binaries reference bytes they do not own
// (usually the Kafka record's buffer) until cloned.
type Value struct {
	Kind Kind
	I    int64   // KindLong, KindTimestamp, KindBool (0 or 1)
	F    float64 // KindDouble
	B    []byte  // KindString (UTF-8, possibly invalid), KindBinary
	A    []Value // KindArray, KindStruct
}

// Null is the null value.
var Null = Value{}

// String returns a string value that references b.
func String(b []byte) Value { return Value{Kind: KindString, B: b} }

// Str returns a string value holding s.
func Str(s string) Value { return Value{Kind: KindString, B: []byte(s)} }

// Long returns an integer value.
func Long(i int64) Value { return Value{Kind: KindLong, I: i} }

// Double returns a floating-point value.
func Double(f float64) Value { return Value{Kind: KindDouble, F: f} }

// Bool returns a boolean value.
func Bool(b bool) Value {
	if b {
		return Value{Kind: KindBool, I: 1}
	}
	return Value{Kind: KindBool}
}

// Timestamp returns a timestamp value with microsecond precision.
func Timestamp(t time.Time) Value { return Value{Kind: KindTimestamp, I: t.UnixMicro()} }

// IsNull reports whether v is null.
func (v Value) IsNull() bool { return v.Kind == KindNull }

// Clone returns a deep copy of v that owns its bytes.
func (v Value) Clone() Value {
	switch v.Kind {
	case KindString, KindBinary:
		v.B = append([]byte(nil), v.B...)
	case KindArray, KindStruct:
		a := make([]Value, len(v.A))
		for i, e := range v.A {
			a[i] = e.Clone()
		}
		v.A = a
	}
	return v
}

// Go converts v to a plain Go value: nil, string, []byte, int64, float64,
// bool, time.Time, []any, or []any for structs.
func (v Value) Go() any {
	switch v.Kind {
	case KindString:
		return string(ToValidUTF8(v.B))
	case KindBinary:
		return append([]byte(nil), v.B...)
	case KindLong:
		return v.I
	case KindDouble:
		return v.F
	case KindBool:
		return v.I != 0
	case KindTimestamp:
		return time.UnixMicro(v.I).UTC()
	case KindArray, KindStruct:
		out := make([]any, len(v.A))
		for i, e := range v.A {
			out[i] = e.Go()
		}
		return out
	}
	return nil
}

// AppendText appends the display form of v (as Spark's console shows it) to
// dst, timestamps in UTC.
func (v Value) AppendText(dst []byte) []byte { return v.AppendTextIn(dst, time.UTC) }

// AppendTextIn is AppendText with timestamps in zone (nil: UTC).
func (v Value) AppendTextIn(dst []byte, zone *time.Location) []byte {
	switch v.Kind {
	case KindNull:
		return append(dst, "NULL"...)
	case KindString:
		return AppendValidUTF8(dst, v.B)
	case KindBinary:
		dst = append(dst, '[')
		for i, c := range v.B {
			if i > 0 {
				dst = append(dst, ' ')
			}
			dst = append(dst, "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		}
		return append(dst, ']')
	case KindLong:
		return strconv.AppendInt(dst, v.I, 10)
	case KindDouble:
		return appendDouble(dst, v.F)
	case KindBool:
		return strconv.AppendBool(dst, v.I != 0)
	case KindTimestamp:
		if zone == nil {
			zone = time.UTC
		}
		return time.UnixMicro(v.I).In(zone).AppendFormat(dst, "2006-01-02 15:04:05.999999")
	case KindArray, KindStruct:
		open, closing := byte('['), byte(']')
		if v.Kind == KindStruct {
			open, closing = '{', '}'
		}
		dst = append(dst, open)
		for i, e := range v.A {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = e.AppendTextIn(dst, zone)
		}
		return append(dst, closing)
	}
	return dst
}

// appendDouble formats like Java's Double.toString for common values.
func appendDouble(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e7 {
		return strconv.AppendFloat(dst, f, 'f', 1, 64)
	}
	if a := math.Abs(f); a >= 1e-3 && a < 1e7 {
		return strconv.AppendFloat(dst, f, 'f', -1, 64)
	}
	return strconv.AppendFloat(dst, f, 'E', -1, 64)
}

// Row is one row of values, in schema order.
type Row []Value

// Clone returns a deep copy of r.
func (r Row) Clone() Row {
	out := make(Row, len(r))
	for i, v := range r {
		out[i] = v.Clone()
	}
	return out
}

// RowBuffer collects copies of rows. Their values and string bytes go into
// shared slabs, so that collecting many rows allocates per slab growth, not
// per row and string as Clone does. Rows already collected stay valid when
// the slabs grow. The zero RowBuffer is empty and ready.
type RowBuffer struct {
	rows  []Row
	vals  []Value
	bytes []byte
}

// Add appends a copy of r.
func (b *RowBuffer) Add(r Row) {
	start := len(b.vals)
	b.vals = append(b.vals, r...) // one copy; each Value copied alone costs more than its fix-up
	vals := b.vals[start:len(b.vals):len(b.vals)]
	for i := range vals {
		switch v := &vals[i]; v.Kind {
		case KindString, KindBinary:
			off := len(b.bytes)
			b.bytes = append(b.bytes, v.B...)
			v.B = b.bytes[off:len(b.bytes):len(b.bytes)]
		case KindArray, KindStruct:
			*v = v.Clone()
		}
	}
	b.rows = append(b.rows, vals)
}

// Grow makes room for n more rows of cols values each, so that adding them
// copies no slab.
func (b *RowBuffer) Grow(n, cols int) {
	b.rows = slices.Grow(b.rows, n)
	b.vals = slices.Grow(b.vals, n*cols)
}

// Reset empties b, keeping its slabs unless they exceed rowBufferKeep bytes:
// the rows it returned before must no longer be used.
func (b *RowBuffer) Reset() {
	size := cap(b.rows)*int(unsafe.Sizeof(Row{})) + cap(b.vals)*int(unsafe.Sizeof(Value{})) + cap(b.bytes)
	if size > rowBufferKeep {
		*b = RowBuffer{}
		return
	}
	b.rows, b.vals, b.bytes = b.rows[:0], b.vals[:0], b.bytes[:0]
}

// rowBufferKeep bounds the slabs a RowBuffer keeps when reset: a large
// batch's rows are not held on to for the small ones after it.
const rowBufferKeep = 16 << 20

// Rows returns the collected rows, in the order they were added.
func (b *RowBuffer) Rows() []Row { return b.rows }

// kindOf maps a plan type to its runtime kind.
func kindOf(t planpb.DataType) Kind {
	switch t {
	case planpb.DataType_STRING:
		return KindString
	case planpb.DataType_BINARY:
		return KindBinary
	case planpb.DataType_LONG, planpb.DataType_INT:
		return KindLong
	case planpb.DataType_DOUBLE:
		return KindDouble
	case planpb.DataType_BOOLEAN:
		return KindBool
	case planpb.DataType_TIMESTAMP:
		return KindTimestamp
	case planpb.DataType_ARRAY_STRING, planpb.DataType_HEADERS:
		return KindArray
	case planpb.DataType_STRUCT:
		return KindStruct
	}
	return KindNull
}

// ToValidUTF8 returns b with each malformed UTF-8 sequence replaced by U+FFFD
// the way Java's decoder does it (new String(bytes, UTF_8), one replacement
// per malformed sequence as malformedSequence delimits it), which is what
// Spark shows for CAST(binary AS STRING) and splits. Valid input is returned
// as is, without copying.
func ToValidUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return AppendValidUTF8(nil, b)
}

// AppendValidUTF8 appends b to dst, replacing malformed sequences as ToValidUTF8 does.
func AppendValidUTF8(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return append(dst, b...)
	}
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		n := validPrefix(b[i:])
		if n > 0 {
			dst = append(dst, b[i:i+n]...)
			i += n
			continue
		}
		dst = append(dst, "\uFFFD"...)
		i += malformedSequence(b[i:])
	}
	return dst
}

// validPrefix returns the length of the valid multi-byte rune at the start of
// b, or 0 if it is malformed.
func validPrefix(b []byte) int {
	r, n := utf8.DecodeRune(b)
	if r == utf8.RuneError && n <= 1 {
		return 0
	}
	return n
}

// malformedSequence returns the length (>= 1) of the malformed sequence at
// the start of b, which Java's UTF-8 decoder replaces by one U+FFFD: the
// maximal subpart of an ill-formed sequence per Unicode's table of
// well-formed UTF-8 byte sequences, except that Java takes an encoded
// surrogate (ED A0-BF 80-BF), or as much of one as b holds, as a single
// malformed sequence where Unicode has one per byte.
func malformedSequence(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEF: // ED A0-BF, a surrogate, included
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for ; n <= need && n < len(b); n++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return n
}
