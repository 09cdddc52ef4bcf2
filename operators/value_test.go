package operators

import (
	"bytes"
	"reflect"
	"testing"
)

// TestRowBuffer checks that collected rows are deep copies that survive the
// source's reuse and the buffer's growth.
func TestRowBuffer(t *testing.T) {
	var b RowBuffer
	b.Grow(10, 3) // then grows on its own
	src := make(Row, 3)
	word := []byte("word-00")
	var want []Row
	for i := range 1000 {
		word[5], word[6] = byte('0'+i/10%10), byte('0'+i%10)
		src[0] = Value{Kind: KindString, B: word}
		src[1] = Long(int64(i))
		src[2] = Value{Kind: KindArray, A: []Value{{Kind: KindBinary, B: word}}}
		b.Add(src)
		want = append(want, src.Clone())
	}
	word[0] = 'X' // the source's bytes are reused: copies must not see it
	if got := b.Rows(); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows differ from clones: first %v, want %v", got[0], want[0])
	}
	rows := b.Rows()
	rows[0][0].B = append(rows[0][0].B, '!') // capped: copies, leaves row 1 alone
	if string(rows[1][0].B) != "word-01" {
		t.Errorf("appending to row 0's string changed row 1 to %q", rows[1][0].B)
	}
}

// FuzzAppendCase checks lower and upper, whose ASCII path maps bytes in
// place, against bytes.ToLower and ToUpper of the valid UTF-8 string.
func FuzzAppendCase(f *testing.F) {
	for _, s := range []string{"", "GET /Index.HTML @[`{", "ÀÉ straße", "a\xffB", "Z\x00z"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := appendCase([]byte("x"), b, 'A', bytes.ToLower), append([]byte("x"), bytes.ToLower(ToValidUTF8(b))...); !bytes.Equal(got, want) {
			t.Fatalf("lower(%q) = %q, want %q", b, got[1:], want[1:])
		}
		if got, want := appendCase(nil, b, 'a', bytes.ToUpper), bytes.ToUpper(ToValidUTF8(b)); !bytes.Equal(got, want) {
			t.Fatalf("upper(%q) = %q, want %q", b, got, want)
		}
	})
}

// TestCompareColumn checks the column-with-literal comparison against the
// general one for every operator, over values of each kind and null.
func TestCompareColumn(t *testing.T) {
	vals := []Value{Null, Str(""), Str("b"), Str("ab"), {Kind: KindBinary, B: []byte("b")}, Long(-1), Long(2), Double(1.5), Bool(true), Bool(false)}
	lits := []Value{Null, Str(""), Str("b"), Long(2), Double(1.5), Bool(true)}
	for op, holds := range compareOps {
		for _, lit := range lits {
			fast := &compareColumn{holds: holds, col: 0, lit: lit}
			slow := &compare{holds: holds, l: &columnExpr{i: 0}, r: &literalExpr{v: lit}}
			for _, v := range vals {
				row := Row{v}
				if got, want := fast.Eval(row), slow.Eval(row); got.Kind != want.Kind || got.I != want.I {
					t.Errorf("%v %s %v = %v, want %v", v, op, lit, got, want)
				}
			}
		}
	}
}

// BenchmarkRowBufferAdd copies update-mode rows (a word and its count), as
// the reduce does for each changed group.
func BenchmarkRowBufferAdd(b *testing.B) {
	row := Row{Str("connection"), Long(42)}
	var buf RowBuffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		for range 1000 {
			buf.Add(row)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/row")
}
