package operators

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gostream/gostream/proto/planpb"
)

// FuzzJSON runs Kafka-borne text through the JSON functions: they never
// panic, their scanner agrees with encoding/json on what is valid JSON,
// get_json_object(x, '$') re-serializes a document to an equal one, and
// to_json(from_json(x)) is valid JSON.
//
//	go test -run '^$' -fuzz FuzzJSON ./operators
func FuzzJSON(f *testing.F) {
	for _, seed := range []string{
		storeJSON, `{"level":"INFO","status":200,"msg":"a \"b\" \u00e9"}`, `{"a" 1}`, `[1,2,{"a":[]}]`,
		`{"s":{"x":1,"y":"z"},"tags":["a",null,"b"],"t":"2026-12-05T14:00:00Z","d":-1.5e3}`,
		`"str"`, `01`, `{"a":1,}`, `{'a':'b'}`, "{\"a\":\"\x01\"}", `{"a":"\ud83d\ude00"}`, `-`, `{"a":tru}`,
	} {
		f.Add([]byte(seed))
	}
	schema := "level STRING, status INT, msg STRING, s STRUCT<x: BIGINT, y: STRING>, tags ARRAY<STRING>, t TIMESTAMP, d DOUBLE, a BOOLEAN"
	row := Row{Null}
	in := Schema{{Name: "j", Type: planpb.DataType_STRING, Nullable: true}}
	compile := func(e *planpb.Expr) Expr {
		x, err := CompileExpr(e, in)
		if err != nil {
			f.Fatal(err)
		}
		return x
	}
	root := compile(fn("get_json_object", colRef("j"), "$"))
	paths := []Expr{root}
	for _, p := range []string{"$.level", "$.s.x", "$.tags[1]", "$.tags[*]", "$[*].a", "$[0][*][*]", "$.*", "$['s']['y']"} {
		paths = append(paths, compile(fn("get_json_object", colRef("j"), p)))
	}
	roundTrip := compile(fn("to_json", fn("from_json", colRef("j"), schema)))
	f.Fuzz(func(t *testing.T, b []byte) {
		row[0] = String(b)
		var s jsonScanner
		s.reset(b)
		s.skip()
		s.ws()
		whole := !s.failed && s.pos == len(b)
		plain := !strings.ContainsRune(string(b), '\'') // encoding/json has no single quotes
		if valid := json.Valid(b); plain && valid != whole {
			t.Fatalf("%q: scanner says valid=%v, encoding/json %v", b, whole, valid)
		}
		for _, p := range paths {
			p.Eval(row)
		}
		if out := roundTrip.Eval(row); out.Kind != KindNull && !json.Valid(out.B) {
			t.Fatalf("%q: to_json(from_json) = %q, not JSON", b, out.B)
		}
		if c := s.peek(); !whole || !plain || !utf8.Valid(b) || (c != 0 && c != '{' && c != '[') {
			return
		}
		if len(b) > 0 && (b[0] == '{' || b[0] == '[') {
			got := root.Eval(row)
			var want, again any
			if json.Unmarshal(b, &want) != nil || json.Unmarshal(got.B, &again) != nil || !reflect.DeepEqual(want, again) {
				t.Fatalf("get_json_object(%q, '$') = %q, not the same document", b, got.B)
			}
		}
	})
}
