package operators

import (
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
