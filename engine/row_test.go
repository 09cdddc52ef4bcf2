package engine

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/gostream/gostream/operators"
)

func TestRowString(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, tc := range []struct {
		row  operators.Row
		want string
	}{
		{operators.Row{operators.Str("a"), operators.Long(3)}, `Row(word='a', count=3)`},
		{operators.Row{operators.Str("it's"), operators.Null}, `Row(word="it's", count=None)`},
		{operators.Row{operators.Str("a'b\"c\\\n\x01é"), operators.Double(3)}, `Row(word='a\'b"c\\\n\x01é', count=3.0)`},
		{operators.Row{operators.Bool(true), operators.Double(1e20)}, `Row(word=True, count=1e+20)`},
		{operators.Row{operators.Bool(false), operators.Double(math.NaN())}, `Row(word=False, count=nan)`},
		{operators.Row{{Kind: operators.KindBinary, B: []byte("\x00a'\xff")}, operators.Double(0.5)},
			`Row(word=bytearray(b"\x00a'\xff"), count=0.5)`},
		{operators.Row{operators.Timestamp(ts), operators.Timestamp(time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC))},
			`Row(word=datetime.datetime(2024, 1, 2, 3, 4, 5, 6), count=datetime.datetime(2024, 1, 2, 0, 0))`},
		{operators.Row{{Kind: operators.KindArray, A: []operators.Value{operators.Str("x"), operators.Null}}, operators.Double(-2.25e-5)},
			`Row(word=['x', None], count=-2.25e-05)`},
	} {
		r := newRow([]string{"word", "count"}, tc.row)
		if got := fmt.Sprint(r); got != tc.want {
			t.Errorf("fmt.Sprint(row) = %s, want %s", got, tc.want)
		}
	}
}

func TestRowGetters(t *testing.T) {
	r := newRow([]string{"word", "count", "ratio", "ok", "raw", "at", "gone"}, operators.Row{
		operators.Str("a"), operators.Long(3), operators.Double(0.5), operators.Bool(true),
		{Kind: operators.KindBinary, B: []byte{1}}, operators.Timestamp(time.UnixMicro(7)), operators.Null,
	})
	if s, err := r.GetString("WORD"); s != "a" || err != nil {
		t.Fatalf("GetString(WORD) = %q, %v", s, err)
	}
	if n, err := r.GetLong("count"); n != 3 || err != nil {
		t.Fatalf("GetLong(count) = %d, %v", n, err)
	}
	if f, err := r.GetDouble("ratio"); f != 0.5 || err != nil {
		t.Fatalf("GetDouble(ratio) = %v, %v", f, err)
	}
	if b, err := r.GetBoolean("ok"); !b || err != nil {
		t.Fatalf("GetBoolean(ok) = %v, %v", b, err)
	}
	if b, err := r.GetBinary("raw"); len(b) != 1 || err != nil {
		t.Fatalf("GetBinary(raw) = %v, %v", b, err)
	}
	if at, err := r.GetTimestamp("at"); at.UnixMicro() != 7 || err != nil {
		t.Fatalf("GetTimestamp(at) = %v, %v", at, err)
	}
	if _, err := r.GetString("count"); !errors.Is(err, ErrColumnType) || err.Error() != `engine: column of another type: column "count" is int64, not string` {
		t.Fatalf("GetString(count) = %v", err)
	}
	if _, err := r.GetLong("cnt"); !errors.Is(err, ErrNoColumn) || err.Error() != `engine: no column "cnt": the row has columns [word, count, ratio, ok, raw, at, gone]` {
		t.Fatalf("GetLong(cnt) = %v", err)
	}
	if _, err := r.GetString("gone"); !errors.Is(err, ErrNull) || !r.IsNull("gone") {
		t.Fatalf("GetString(gone) = %v", err)
	}
}
