package operators

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gostream/gostream/proto/planpb"
)

// jsonFuncs are Spark's JSON functions and struct field access.
var jsonFuncs = map[string]compileFunc{
	"from_json":       compileFromJSON,
	"get_json_object": compileGetJSONObject,
	"to_json":         compileToJSON,
	"get_field":       compileGetField,
	"named_struct":    compileNamedStruct,
}

// structTyped is implemented by expressions of type STRUCT: Fields is the
// struct's schema.
type structTyped interface{ Fields() Schema }

// fieldsOf returns the struct fields of x, nil for other types.
func fieldsOf(x Expr) Schema {
	if s, ok := x.(structTyped); ok && x.Type() == planpb.DataType_STRUCT {
		return s.Fields()
	}
	return nil
}

// fromJSON is from_json(str, schema): the JSON object in str read into a
// struct of schema's fields, in Spark's PERMISSIVE mode: members the schema
// lacks are ignored, missing ones and ones of another type are null (the
// other fields are kept), and a malformed document, or one that is not an
// object, gives a struct of nulls. A null str is null.
type fromJSON struct {
	x      Expr
	schema Schema
	zone   *time.Location // of timestamps without one
	s      jsonScanner
	vals   []Value // the fields of every struct, nested ones after the top's
}

func compileFromJSON(cs *callSite) (Expr, error) {
	if err := cs.arity(2, 2); err != nil {
		return nil, err
	}
	x, err := cs.str(0)
	if err != nil {
		return nil, err
	}
	ddl, err := cs.constString(1, "schema")
	if err != nil {
		return nil, err
	}
	schema, err := ParseDDL(ddl)
	if err != nil {
		return nil, fmt.Errorf("%w: from_json: %w", ErrType, err)
	}
	return &fromJSON{x: x, schema: schema, zone: cs.env.timeZone()}, nil
}

func (f *fromJSON) Type() planpb.DataType { return planpb.DataType_STRUCT }
func (f *fromJSON) Fields() Schema        { return f.schema }

func (f *fromJSON) Eval(row Row) Value {
	v := f.x.Eval(row)
	if v.Kind == KindNull {
		return Null
	}
	f.s.reset(v.B)
	f.vals = f.vals[:0]
	out := f.readStruct(f.schema)
	if f.s.failed { // malformed: every field null
		clear(out.A)
	}
	return out
}

// readStruct reads the object at the cursor into a struct of schema.
func (f *fromJSON) readStruct(schema Schema) Value {
	start, end := len(f.vals), len(f.vals)+len(schema)
	for range schema {
		f.vals = append(f.vals, Null)
	}
	if f.s.peek() != '{' {
		f.s.fail()
		return Value{Kind: KindStruct, A: f.vals[start:end:end]}
	}
	f.s.object(func(name []byte) bool {
		i := fieldIndex(schema, name)
		if i < 0 {
			return f.s.skip()
		}
		v := f.readValue(schema[i])
		f.vals[start+i] = v // a nested struct's fields went after end
		return true
	})
	return Value{Kind: KindStruct, A: f.vals[start:end:end]}
}

// fieldIndex finds a JSON member's field, by exact name as Spark's JSON
// reader does.
func fieldIndex(schema Schema, name []byte) int {
	for i, fd := range schema {
		if fd.Name == string(name) {
			return i
		}
	}
	return -1
}

// readValue reads the value at the cursor as fd's type; a value of another
// type is consumed and null.
func (f *fromJSON) readValue(fd Field) Value {
	s := &f.s
	c := s.peek()
	if c == 'n' {
		s.scalar()
		return Null
	}
	switch fd.Type {
	case planpb.DataType_STRUCT:
		if c != '{' {
			s.skip()
			return Null
		}
		sub := f.readStruct(fd.Fields)
		return sub
	case planpb.DataType_ARRAY_STRING:
		if c != '[' {
			s.skip()
			return Null
		}
		var elems []Value
		s.array(func() bool {
			elems = append(elems, f.readValue(Field{Type: planpb.DataType_STRING}))
			return true
		})
		return Value{Kind: KindArray, A: elems}
	case planpb.DataType_STRING:
		if c == '"' || c == '\'' {
			return String(s.str())
		}
		start := len(s.arena) // other values as their JSON text
		s.arena = appendJSONValue(s.arena, s)
		return String(s.arena[start:len(s.arena):len(s.arena)])
	case planpb.DataType_TIMESTAMP:
		switch {
		case c == '"' || c == '\'':
			t, ok := parseCastTimestamp(string(s.str()), f.zone)
			if ok {
				return Timestamp(t)
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if secs, err := strconv.ParseInt(string(s.scalar()), 10, 64); err == nil {
				return Value{Kind: KindTimestamp, I: secs * 1e6}
			}
		default:
			s.skip()
		}
		return Null
	case planpb.DataType_BOOLEAN:
		if c == 't' || c == 'f' {
			b := s.scalar()
			return Bool(len(b) > 0 && b[0] == 't') // a malformed word fails the scan: the struct is all null
		}
	case planpb.DataType_LONG, planpb.DataType_INT:
		if c == '-' || (c >= '0' && c <= '9') {
			bits := 64
			if fd.Type == planpb.DataType_INT {
				bits = 32
			}
			if i, err := strconv.ParseInt(string(s.scalar()), 10, bits); err == nil {
				return Long(i)
			}
			return Null // a fraction, or out of range
		}
	case planpb.DataType_DOUBLE:
		switch {
		case c == '-' || (c >= '0' && c <= '9'):
			if d, err := strconv.ParseFloat(string(s.scalar()), 64); err == nil {
				return Double(d)
			}
			return Null
		case c == '"' || c == '\'': // Spark reads these strings as doubles
			switch string(s.str()) {
			case "NaN":
				return Double(math.NaN())
			case "Infinity", "+Infinity", "Inf", "+Inf", "INF", "+INF":
				return Double(math.Inf(1))
			case "-Infinity", "-Inf", "-INF":
				return Double(math.Inf(-1))
			}
			return Null
		}
	}
	s.skip()
	return Null
}

// ParseDDL parses a schema in Spark's DDL form, such as
// "level STRING, status INT, msg STRING" or "STRUCT<a: INT, b: ARRAY<STRING>>":
// the types string (varchar(n), char(n)), int (integer, smallint,
// tinyint), bigint (long), double (float, real), boolean, timestamp,
// array<string> and struct<...>.
func ParseDDL(ddl string) (Schema, error) {
	p := ddlParser{src: ddl}
	p.next()
	if strings.EqualFold(p.tok, "struct") && p.peekIs("<") {
		t, fields, err := p.typ()
		if err != nil {
			return nil, err
		}
		if t != planpb.DataType_STRUCT || p.tok != "" {
			return nil, p.errorf("unexpected %q after the struct", p.tok)
		}
		return fields, nil
	}
	fields, err := p.fields("")
	if err == nil && p.tok != "" {
		err = p.errorf("unexpected %q", p.tok)
	}
	return fields, err
}

type ddlParser struct {
	src string
	pos int
	tok string // the current token; "" at the end
}

func (p *ddlParser) errorf(format string, args ...any) error {
	return fmt.Errorf("schema %q: %s", p.src, fmt.Sprintf(format, args...))
}

func (p *ddlParser) next() {
	for p.pos < len(p.src) && strings.ContainsRune(" \t\n\r", rune(p.src[p.pos])) {
		p.pos++
	}
	if p.pos >= len(p.src) {
		p.tok = ""
		return
	}
	start := p.pos
	switch c := p.src[p.pos]; {
	case c == '`':
		end := strings.IndexByte(p.src[p.pos+1:], '`')
		if end < 0 {
			p.tok, p.pos = p.src[start:], len(p.src)
			return
		}
		p.pos += end + 2
	case c == '\'':
		end := strings.IndexByte(p.src[p.pos+1:], '\'')
		p.pos = len(p.src)
		if end >= 0 {
			p.pos = start + end + 2
		}
	case c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		for p.pos < len(p.src) {
			c := p.src[p.pos]
			if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				break
			}
			p.pos++
		}
	default:
		p.pos++
	}
	p.tok = p.src[start:p.pos]
}

func (p *ddlParser) peekIs(tok string) bool {
	save, saveTok := p.pos, p.tok
	p.next()
	is := p.tok == tok
	p.pos, p.tok = save, saveTok
	return is
}

// fields parses "name type, ..." up to end ("" or ">").
func (p *ddlParser) fields(end string) (Schema, error) {
	var s Schema
	for {
		name := p.tok
		if name == "" || name == end || strings.ContainsAny(name[:1], ",:<>()") {
			return nil, p.errorf("expected a field name, got %q", name)
		}
		if name[0] == '`' {
			name = strings.Trim(name, "`")
		}
		p.next()
		if p.tok == ":" {
			p.next()
		}
		t, sub, err := p.typ()
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(p.tok, "not") {
			p.next() // NOT NULL: the reader gives null anyway for a missing field
			p.next()
		}
		if strings.EqualFold(p.tok, "comment") {
			p.next()
			p.next()
		}
		s = append(s, Field{Name: name, Type: t, Nullable: true, Fields: sub})
		if p.tok != "," {
			return s, nil
		}
		p.next()
	}
}

// typ parses a type.
func (p *ddlParser) typ() (planpb.DataType, Schema, error) {
	name := strings.ToLower(p.tok)
	p.next()
	switch name {
	case "string":
		return planpb.DataType_STRING, nil, nil
	case "varchar", "char":
		if p.tok == "(" {
			for p.tok != ")" && p.tok != "" {
				p.next()
			}
			p.next()
		}
		return planpb.DataType_STRING, nil, nil
	case "int", "integer", "smallint", "short", "tinyint", "byte":
		return planpb.DataType_INT, nil, nil
	case "bigint", "long":
		return planpb.DataType_LONG, nil, nil
	case "double", "float", "real":
		return planpb.DataType_DOUBLE, nil, nil
	case "boolean":
		return planpb.DataType_BOOLEAN, nil, nil
	case "timestamp":
		return planpb.DataType_TIMESTAMP, nil, nil
	case "array":
		if p.tok != "<" {
			return 0, nil, p.errorf("array needs <element type>")
		}
		p.next()
		elem, _, err := p.typ()
		if err != nil {
			return 0, nil, err
		}
		if elem != planpb.DataType_STRING {
			return 0, nil, p.errorf("array<%s> is not supported yet: use array<string>", TypeName(elem))
		}
		if p.tok != ">" {
			return 0, nil, p.errorf("expected > after array<string, got %q", p.tok)
		}
		p.next()
		return planpb.DataType_ARRAY_STRING, nil, nil
	case "struct":
		if p.tok != "<" {
			return 0, nil, p.errorf("struct needs <fields>")
		}
		p.next()
		fields, err := p.fields(">")
		if err != nil {
			return 0, nil, err
		}
		if p.tok != ">" {
			return 0, nil, p.errorf("expected > after the struct's fields, got %q", p.tok)
		}
		p.next()
		return planpb.DataType_STRUCT, fields, nil
	case "":
		return 0, nil, p.errorf("a type is missing at the end")
	}
	return 0, nil, p.errorf("the type %q is not supported (supported: string, int, bigint, double, boolean, timestamp, array<string>, struct<...>)", name)
}

// getField is a struct's field: get_field(struct, name), the j.level of
// Column.GetField and of Col("j.level").
type getField struct {
	x Expr
	i int
	f Field
}

func compileGetField(cs *callSite) (Expr, error) {
	if err := cs.arity(2, 2); err != nil {
		return nil, err
	}
	name, err := cs.constString(1, "field name")
	if err != nil {
		return nil, err
	}
	return newGetField(cs.args[0], name)
}

func newGetField(x Expr, name string) (Expr, error) {
	fields := fieldsOf(x)
	if fields == nil {
		return nil, fmt.Errorf("%w: cannot get field %q from %s: it is not a struct", ErrType, name, TypeName(x.Type()))
	}
	i, err := fields.Index(name)
	if err != nil {
		return nil, fmt.Errorf("%w: no field %q in the struct: its fields are %s", ErrUnknownColumn, name, fields.names())
	}
	return &getField{x: x, i: i, f: fields[i]}, nil
}

func (g *getField) Type() planpb.DataType { return g.f.Type }
func (g *getField) Fields() Schema        { return g.f.Fields }

func (g *getField) Eval(row Row) Value {
	v := g.x.Eval(row)
	if v.Kind != KindStruct {
		return Null
	}
	return v.A[g.i]
}

// nestedColumn resolves a dotted name, col.field.field, through struct
// columns, as Spark resolves j.level.
func nestedColumn(name string, in Schema) (Expr, bool) {
	parts := strings.Split(name, ".")
	i, err := in.Index(parts[0])
	if len(parts) < 2 || err != nil || in[i].Type != planpb.DataType_STRUCT {
		return nil, false
	}
	var x Expr = &columnExpr{i: i, t: in[i].Type, fields: in[i].Fields}
	for _, p := range parts[1:] {
		if x, err = newGetField(x, p); err != nil {
			return nil, false
		}
	}
	return x, true
}

// toJSON is to_json(struct or array): the value as compact JSON, as Spark
// writes it: null fields left out, timestamps as
// yyyy-MM-dd'T'HH:mm:ss.SSSXXX in the session time zone.
type toJSON struct {
	x      Expr
	fields Schema
	zone   *time.Location
	buf    []byte
}

func compileToJSON(cs *callSite) (Expr, error) {
	if err := cs.arity(1, 1); err != nil {
		return nil, err
	}
	x := cs.args[0]
	switch x.Type() {
	case planpb.DataType_STRUCT, planpb.DataType_ARRAY_STRING:
	default:
		return nil, fmt.Errorf("%w: to_json takes a struct or an array, got %s", ErrType, TypeName(x.Type()))
	}
	return &toJSON{x: x, fields: fieldsOf(x), zone: cs.env.timeZone()}, nil
}

func (t *toJSON) Type() planpb.DataType { return planpb.DataType_STRING }

func (t *toJSON) Eval(row Row) Value {
	v := t.x.Eval(row)
	if v.Kind == KindNull {
		return Null
	}
	t.buf = appendToJSON(t.buf[:0], v, t.fields, t.zone)
	return String(t.buf)
}

func appendToJSON(dst []byte, v Value, fields Schema, zone *time.Location) []byte {
	switch v.Kind {
	case KindNull:
		return append(dst, "null"...)
	case KindStruct:
		dst = append(dst, '{')
		first := true
		for i, f := range fields {
			if v.A[i].Kind == KindNull {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(appendJSONText(dst, []byte(f.Name)), ':')
			dst = appendToJSON(dst, v.A[i], f.Fields, zone)
		}
		return append(dst, '}')
	case KindArray:
		dst = append(dst, '[')
		for i, e := range v.A {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendToJSON(dst, e, nil, zone)
		}
		return append(dst, ']')
	case KindString, KindBinary:
		return appendJSONText(dst, v.B)
	case KindTimestamp:
		return append(time.UnixMicro(v.I).In(zone).AppendFormat(append(dst, '"'), "2006-01-02T15:04:05.000Z07:00"), '"')
	case KindDouble:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			return append(append(append(dst, '"'), v.AppendText(nil)...), '"')
		}
	}
	return v.AppendText(dst)
}

// get_json_object's path instructions, as Spark's JsonPathParser makes them.
type pathOp struct {
	kind  byte // 'k' key, 's' subscript, 'w' wildcard, 'i' index, 'n' named
	index int64
	name  string
}

// parseJSONPath parses the JSONPath subset Spark supports: $ followed by
// .name, ['name'], [n], [*], .* or ['*'].
func parseJSONPath(path string) ([]pathOp, bool) {
	if !strings.HasPrefix(path, "$") {
		return nil, false
	}
	var ops []pathOp
	for p := path[1:]; p != ""; {
		switch {
		case strings.HasPrefix(p, ".*"), strings.HasPrefix(p, "['*']"):
			ops = append(ops, pathOp{kind: 'w'})
			p = p[min(len(p), map[bool]int{true: 2, false: 5}[p[0] == '.']):]
		case strings.HasPrefix(p, "['"):
			end := strings.Index(p, "']")
			if end < 3 || strings.ContainsAny(p[2:end], "'?") {
				return nil, false
			}
			ops = append(ops, pathOp{kind: 'k'}, pathOp{kind: 'n', name: p[2:end]})
			p = p[end+2:]
		case p[0] == '.':
			end := strings.IndexAny(p[1:], ".[")
			if end < 0 {
				end = len(p) - 1
			}
			if end == 0 {
				return nil, false
			}
			ops = append(ops, pathOp{kind: 'k'}, pathOp{kind: 'n', name: p[1 : 1+end]})
			p = p[1+end:]
		case strings.HasPrefix(p, "[*]"):
			ops = append(ops, pathOp{kind: 's'}, pathOp{kind: 'w'})
			p = p[3:]
		case p[0] == '[':
			end := strings.IndexByte(p, ']')
			if end < 2 {
				return nil, false
			}
			n, err := strconv.ParseInt(p[1:end], 10, 64)
			if err != nil || n < 0 || p[1] == '+' || p[1] == '-' {
				return nil, false
			}
			ops = append(ops, pathOp{kind: 's'}, pathOp{kind: 'i', index: n})
			p = p[end+1:]
		default:
			return nil, false
		}
	}
	return ops, true
}

// Write styles of get_json_object's evaluation.
const (
	rawStyle = iota
	quotedStyle
	flattenStyle
)

// getJSONObject is get_json_object(json, path): the value at path, a
// string as its text and anything else as compact JSON; null when the path
// is invalid, matches nothing or only nulls, or the JSON is malformed.
type getJSONObject struct {
	x   Expr
	ops []pathOp
	s   jsonScanner
	g   jsonGen
}

func compileGetJSONObject(cs *callSite) (Expr, error) {
	if err := cs.arity(2, 2); err != nil {
		return nil, err
	}
	x, err := cs.str(0)
	if err != nil {
		return nil, err
	}
	path, null, err := cs.literalString(1, "path")
	if err != nil {
		return nil, err
	}
	ops, ok := parseJSONPath(path)
	if null || !ok {
		return nullOf(planpb.DataType_STRING), nil // Spark: an invalid path gives null
	}
	return &getJSONObject{x: x, ops: ops, s: jsonScanner{controls: true}}, nil
}

func (j *getJSONObject) Type() planpb.DataType { return planpb.DataType_STRING }

func (j *getJSONObject) Eval(row Row) Value {
	v := j.x.Eval(row)
	if v.Kind == KindNull {
		return Null
	}
	j.s.reset(v.B)
	j.g.out, j.g.counts = j.g.out[:0], j.g.counts[:0]
	if j.s.peek() == 0 {
		return Null
	}
	matched := j.eval(&j.g, rawStyle, j.ops)
	if !matched || j.s.failed {
		return Null
	}
	return String(j.g.out)
}

// eval is Spark's GetJsonObject.evaluatePath over the value at the cursor,
// which it consumes: it reports whether it wrote a match to g.
func (j *getJSONObject) eval(g *jsonGen, style int, path []pathOp) bool {
	s := &j.s
	c := s.peek()
	switch {
	case s.failed:
		return false
	case (c == '"' || c == '\'') && len(path) == 0 && style == rawStyle:
		g.out = append(g.out, ToValidUTF8(s.str())...)
		return true
	case c == '[' && len(path) == 0 && style == flattenStyle:
		dirty := false
		s.array(func() bool {
			dirty = j.eval(g, style, nil) || dirty
			return true
		})
		return dirty
	case len(path) == 0:
		g.copyValue(s)
		return true
	case c == '{' && path[0].kind == 'k':
		dirty := false
		xs := path[1:]
		s.object(func(name []byte) bool {
			switch {
			case dirty:
				return s.skip()
			case xs[0].kind == 'n' && xs[0].name == string(name):
				if s.peek() == 'n' {
					s.scalar() // a null member matches nothing
					return true
				}
				dirty = j.eval(g, style, xs[1:])
			case xs[0].kind == 'w':
				dirty = j.eval(g, style, xs[1:])
			default:
				return s.skip()
			}
			return true
		})
		return dirty
	case c == '[' && len(path) >= 4 && path[0].kind == 's' && path[1].kind == 'w' && path[2].kind == 's' && path[3].kind == 'w':
		dirty := false
		g.startArray()
		s.array(func() bool {
			dirty = j.eval(g, flattenStyle, path[4:]) || dirty
			return true
		})
		g.endArray()
		return dirty
	case c == '[' && len(path) >= 2 && path[0].kind == 's' && path[1].kind == 'w' && style != quotedStyle:
		next := quotedStyle
		if style == flattenStyle {
			next = flattenStyle
		}
		var sub jsonGen
		sub.startArray()
		n := 0
		s.array(func() bool {
			if j.eval(&sub, next, path[2:]) {
				n++
			}
			return true
		})
		sub.endArray()
		switch {
		case n > 1:
			g.rawValue(sub.out)
		case n == 1:
			g.rawValue(sub.out[1 : len(sub.out)-1])
		}
		return n > 0
	case c == '[' && len(path) >= 2 && path[0].kind == 's' && path[1].kind == 'w':
		dirty := false
		g.startArray()
		s.array(func() bool {
			dirty = j.eval(g, quotedStyle, path[2:]) || dirty
			return true
		})
		g.endArray()
		return dirty
	case c == '[' && len(path) >= 2 && path[0].kind == 's' && path[1].kind == 'i':
		xs := path[2:]
		if len(xs) >= 2 && xs[0].kind == 's' && xs[1].kind == 'w' {
			style = quotedStyle
		}
		dirty, i := false, int64(0)
		s.array(func() bool {
			if i == path[1].index {
				dirty = j.eval(g, style, xs)
			} else {
				s.skip()
			}
			i++
			return true
		})
		return dirty
	}
	s.skip()
	return false
}

// namedStruct is named_struct(name1, value1, ...): a struct of the values,
// the names being string literals.
type namedStruct struct {
	vals   []Expr
	fields Schema
	out    []Value
}

func compileNamedStruct(cs *callSite) (Expr, error) {
	if len(cs.args) == 0 || len(cs.args)%2 != 0 {
		return nil, fmt.Errorf("%w: named_struct takes name, value pairs, got %d arguments", ErrType, len(cs.args))
	}
	n := &namedStruct{}
	for i := 0; i < len(cs.args); i += 2 {
		name, err := cs.constString(i, "field name")
		if err != nil {
			return nil, err
		}
		v := cs.args[i+1]
		n.vals = append(n.vals, v)
		n.fields = append(n.fields, Field{Name: name, Type: v.Type(), Nullable: true, Fields: fieldsOf(v)})
	}
	n.out = make([]Value, len(n.vals))
	return n, nil
}

func (n *namedStruct) Type() planpb.DataType { return planpb.DataType_STRUCT }
func (n *namedStruct) Fields() Schema        { return n.fields }

func (n *namedStruct) Eval(row Row) Value {
	for i, v := range n.vals {
		n.out[i] = v.Eval(row)
	}
	return Value{Kind: KindStruct, A: n.out}
}
