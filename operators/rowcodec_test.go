package operators

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

func TestRowCodec(t *testing.T) {
	row := Row{Null, Str("héllo"), {Kind: KindBinary, B: []byte{0, 1}}, Long(-7), Double(math.Inf(-1)),
		{Kind: KindBool, I: 1}, {Kind: KindTimestamp, I: 1700000000123456},
		{Kind: KindArray, A: []Value{Str("a"), Null, {Kind: KindStruct, A: []Value{Str("k"), {Kind: KindBinary, B: []byte("v")}}}}},
		{Kind: KindArray, A: []Value{}}}
	b := AppendRow([]byte("x"), row)
	got, err := ReadRow(b[1:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, row) {
		t.Fatalf("ReadRow(AppendRow(%v)) = %v", row, got)
	}
	for _, bad := range [][]byte{nil, {5}, {1, 99}, {1, byte(KindString), 10, 'a'}, append(AppendRow(nil, row), 0)} {
		if _, err := ReadRow(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ReadRow(%v) = %v, want ErrCorrupt", bad, err)
		}
	}
}
