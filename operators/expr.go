package operators

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gostream/gostream/internal/registry"
	"github.com/gostream/gostream/proto/planpb"
)

// Expr is a compiled expression. Eval's result may reference buffers owned
// by the expression or the row, valid until the next Eval.
type Expr interface {
	Eval(row Row) Value
	Type() planpb.DataType
}

// Func is a Go function callable from plans by name (engine.RegisterUDF
// builds one from a typed Go function). Fn is called with one Value per
// argument, of the kinds of Args, none of them null: a null argument makes
// the call's result null without calling Fn (Spark's rule for Scala UDFs
// with primitive arguments). Fn must not keep args. An error from Fn, or a
// panic in it, fails the task that called it with a *FuncError.
type Func struct {
	Name   string
	Args   []planpb.DataType
	Result planpb.DataType
	Fn     func(args []Value) (Value, error)
}

// Signature is f's argument and result types in Spark's names, such as
// "(string, bigint) -> double": what Funcs' fingerprint compares.
func (f Func) Signature() string {
	args := make([]string, len(f.Args))
	for i, a := range f.Args {
		args[i] = TypeName(a)
	}
	return "(" + strings.Join(args, ", ") + ") -> " + TypeName(f.Result)
}

// Funcs is the registry of the functions plans call by name. Every process
// that runs a plan must register the same functions (in an init func, the
// way database/sql drivers register); a cluster compares the registries'
// fingerprints at submit time. Tests register through Funcs.Scope.
var Funcs = registry.New[Func]("function", Func.Signature)

// RegisterFunc registers f under f.Name in Funcs. A name registered twice
// is refused with an error wrapping registry.ErrDuplicate and becomes
// unusable, so that plans calling it fail analysis instead of running
// whichever came first.
func RegisterFunc(f Func) error { return Funcs.Register(f.Name, f) }

// FuncError is the failure of a registered function: the error it returned
// or the panic it raised. Expr.Eval has no error result, so a udf call
// raises it as a panic, and the engine's tasks recover it into the batch's
// error.
type FuncError struct {
	Func  string
	Err   error  // the error Fn returned, or the panic as an error
	Stack []byte // the panicking goroutine's stack, for a panic
}

func (e *FuncError) Error() string {
	if e.Stack != nil {
		return fmt.Sprintf("function %q panicked: %v", e.Func, e.Err)
	}
	return fmt.Sprintf("function %q failed: %v", e.Func, e.Err)
}

func (e *FuncError) Unwrap() error { return e.Err }

// CompileExpr compiles e against the input schema. Its current_timestamp
// is the time of the call; a Narrow's expressions read its BatchClock.
func CompileExpr(e *planpb.Expr, in Schema) (Expr, error) {
	return compileExpr(e, in, nil)
}

// compileExpr compiles e in env (nil: current_timestamp is the time when
// it is compiled, the time zone UTC).
func compileExpr(e *planpb.Expr, in Schema, env *exprEnv) (Expr, error) {
	switch k := e.GetKind().(type) {
	case *planpb.Expr_Column:
		i, err := in.Index(k.Column)
		if err != nil {
			if x, ok := nestedColumn(k.Column, in); ok {
				return x, nil
			}
			return nil, err
		}
		return &columnExpr{i: i, t: in[i].Type, fields: in[i].Fields}, nil
	case *planpb.Expr_Literal:
		return compileLiteral(k.Literal)
	case *planpb.Expr_Cast:
		x, err := compileExpr(k.Cast.GetExpr(), in, env)
		if err != nil {
			return nil, err
		}
		return castIn(x, k.Cast.GetTo(), env)
	case *planpb.Expr_Call:
		return compileCall(k.Call, in, env)
	}
	return nil, fmt.Errorf("%w: empty expression", ErrType)
}

type columnExpr struct {
	i      int
	t      planpb.DataType
	fields Schema // a struct's
}

func (c *columnExpr) Eval(row Row) Value    { return row[c.i] }
func (c *columnExpr) Type() planpb.DataType { return c.t }
func (c *columnExpr) Fields() Schema        { return c.fields }

type literalExpr struct {
	v Value
	t planpb.DataType
}

func (l *literalExpr) Eval(Row) Value        { return l.v }
func (l *literalExpr) Type() planpb.DataType { return l.t }

func compileLiteral(l *planpb.Literal) (Expr, error) {
	switch v := l.GetValue().(type) {
	case *planpb.Literal_String_:
		return &literalExpr{Str(v.String_), planpb.DataType_STRING}, nil
	case *planpb.Literal_Long:
		return &literalExpr{Long(v.Long), planpb.DataType_LONG}, nil
	case *planpb.Literal_Double:
		return &literalExpr{Double(v.Double), planpb.DataType_DOUBLE}, nil
	case *planpb.Literal_Boolean:
		return &literalExpr{Bool(v.Boolean), planpb.DataType_BOOLEAN}, nil
	case *planpb.Literal_Null:
		return &literalExpr{Null, l.GetType()}, nil
	}
	return nil, fmt.Errorf("%w: literal without a value", ErrType)
}

type castExpr struct {
	x    Expr
	to   planpb.DataType
	zone *time.Location // of timestamps read from or written to strings; nil: UTC
	buf  []byte
}

// castIn is newCast with env's time zone.
func castIn(x Expr, to planpb.DataType, env *exprEnv) (Expr, error) {
	c, err := newCast(x, to)
	if c, ok := c.(*castExpr); ok {
		c.zone = env.timeZone()
	}
	return c, err
}

func newCast(x Expr, to planpb.DataType) (Expr, error) {
	from := x.Type()
	ok := from == to
	switch to {
	case planpb.DataType_STRING:
		ok = from != planpb.DataType_HEADERS
	case planpb.DataType_BINARY:
		ok = from == planpb.DataType_STRING || from == planpb.DataType_BINARY
	case planpb.DataType_LONG, planpb.DataType_INT, planpb.DataType_DOUBLE:
		ok = isNumeric(from) || from == planpb.DataType_STRING || from == planpb.DataType_BOOLEAN || from == planpb.DataType_TIMESTAMP
	case planpb.DataType_TIMESTAMP:
		ok = isNumeric(from) || from == planpb.DataType_STRING || from == planpb.DataType_TIMESTAMP
	case planpb.DataType_BOOLEAN:
		ok = isNumeric(from) || from == planpb.DataType_STRING || from == planpb.DataType_BOOLEAN
	}
	if !ok {
		return nil, fmt.Errorf("%w: cannot cast %s to %s", ErrType, TypeName(from), TypeName(to))
	}
	return &castExpr{x: x, to: to}, nil
}

// parseIntegral reads a string as Spark casts it to an integer of the given
// bits (UTF8String.toLong, toInt): surrounding spaces and control
// characters, a sign, digits and a fractional part that is dropped ("1.9"
// is 1); false for anything else or an overflow.
func parseIntegral(b []byte, bits int) (int64, bool) {
	s := strings.TrimFunc(string(b), func(r rune) bool { return r <= ' ' })
	if dot := strings.IndexByte(s, '.'); dot >= 0 {
		for _, c := range []byte(s[dot+1:]) {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		s = s[:dot]
		if s == "" || s == "+" || s == "-" {
			s += "0"
		}
	}
	if s == "" || s[0] != '+' && s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return 0, false
	}
	i, err := strconv.ParseInt(s, 10, bits)
	return i, err == nil
}

// saturate is Java's (long) or (int) of a double: NaN is 0, values out of
// range are the nearest bound.
func saturate(f float64, bits int) int64 {
	lo, hi := float64(math.MinInt64), float64(math.MaxInt64)
	if bits == 32 {
		lo, hi = math.MinInt32, math.MaxInt32
	}
	switch {
	case math.IsNaN(f):
		return 0
	case f <= lo:
		return int64(lo)
	case f >= hi:
		if bits == 32 {
			return math.MaxInt32
		}
		return math.MaxInt64
	}
	return int64(f)
}

func isNumeric(t planpb.DataType) bool {
	return t == planpb.DataType_LONG || t == planpb.DataType_INT || t == planpb.DataType_DOUBLE
}

func (c *castExpr) Type() planpb.DataType { return c.to }

func (c *castExpr) Eval(row Row) Value {
	v := c.x.Eval(row)
	if v.Kind == KindNull {
		return v
	}
	switch c.to {
	case planpb.DataType_STRING:
		if v.Kind == KindString || v.Kind == KindBinary {
			return String(v.B) // CAST(binary AS STRING) reinterprets the bytes
		}
		c.buf = v.AppendTextIn(c.buf[:0], c.zone)
		return String(c.buf)
	case planpb.DataType_BINARY:
		return Value{Kind: KindBinary, B: v.B}
	case planpb.DataType_LONG, planpb.DataType_INT:
		bits := 64
		if c.to == planpb.DataType_INT {
			bits = 32
		}
		switch v.Kind {
		case KindTimestamp: // seconds, rounded down
			return Long(floorDiv(v.I, 1e6))
		case KindDouble:
			return Long(saturate(v.F, bits))
		case KindString:
			i, ok := parseIntegral(v.B, bits)
			if !ok {
				return Null // Spark (non-ANSI): an unparsable string casts to null
			}
			return Long(i)
		}
		if bits == 32 {
			return Long(int64(int32(v.I))) // Java's (int) of a long wraps
		}
		return Long(v.I)
	case planpb.DataType_DOUBLE:
		switch v.Kind {
		case KindDouble:
			return v
		case KindString:
			f, err := strconv.ParseFloat(strings.TrimSpace(string(v.B)), 64)
			if err != nil {
				return Null
			}
			return Double(f)
		}
		if v.Kind == KindTimestamp {
			return Double(float64(v.I) / 1e6)
		}
		return Double(float64(v.I))
	case planpb.DataType_TIMESTAMP:
		switch v.Kind {
		case KindString:
			zone := c.zone
			if zone == nil {
				zone = time.UTC
			}
			t, ok := parseCastTimestamp(string(v.B), zone)
			if !ok {
				return Null
			}
			return Timestamp(t)
		case KindDouble: // seconds
			if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
				return Null
			}
			return Value{Kind: KindTimestamp, I: int64(v.F * 1e6)}
		case KindLong:
			return Value{Kind: KindTimestamp, I: v.I * 1e6}
		}
		return v
	case planpb.DataType_BOOLEAN:
		switch v.Kind {
		case KindDouble:
			return Bool(v.F != 0)
		case KindString:
			switch strings.ToLower(strings.TrimSpace(string(v.B))) {
			case "t", "true", "y", "yes", "1":
				return Bool(true)
			case "f", "false", "n", "no", "0":
				return Bool(false)
			}
			return Null
		}
		return Bool(v.I != 0)
	}
	return v
}

// splitExpr is split(str, pattern[, limit]); explode fuses with it to avoid
// building the array.
type splitExpr struct {
	x      Expr
	sp     *Splitter
	arr    []Value
	append func([]byte) // appends a piece to arr, bound once
}

func (s *splitExpr) Type() planpb.DataType { return planpb.DataType_ARRAY_STRING }

func (s *splitExpr) Eval(row Row) Value {
	v := s.x.Eval(row)
	if v.Kind == KindNull {
		return Null
	}
	s.arr = s.arr[:0]
	s.sp.Each(v.B, s.append)
	return Value{Kind: KindArray, A: s.arr}
}

// each calls fn per piece without building the array; it reports false for a
// null input (no pieces).
func (s *splitExpr) each(row Row, fn func([]byte)) bool {
	v := s.x.Eval(row)
	if v.Kind == KindNull {
		return false
	}
	s.sp.Each(v.B, fn)
	return true
}

func compileCall(c *planpb.Call, in Schema, env *exprEnv) (Expr, error) {
	if c.GetFunction() == WithTimeZone {
		return compileWithTimeZone(c, in, env)
	}
	args := make([]Expr, len(c.GetArgs()))
	for i, a := range c.GetArgs() {
		x, err := compileExpr(a, in, env)
		if err != nil {
			return nil, err
		}
		args[i] = x
	}
	name := strings.ToLower(c.GetFunction())
	switch name {
	case "split":
		return compileSplit(c, args)
	case "=", "!=", "<", "<=", ">", ">=":
		if len(args) != 2 {
			return nil, fmt.Errorf("%w: %s takes 2 arguments, got %d", ErrType, name, len(args))
		}
		l, r, err := coerceComparison(name, args[0], args[1])
		if err != nil {
			return nil, err
		}
		c := &compare{holds: compareOps[name], l: l, r: r}
		col, okCol := c.l.(*columnExpr)
		lit, okLit := c.r.(*literalExpr)
		if okCol && okLit {
			return &compareColumn{holds: c.holds, col: col.i, lit: lit.v}, nil
		}
		return c, nil
	case "and", "or":
		if len(args) != 2 {
			return nil, fmt.Errorf("%w: %s takes 2 arguments, got %d", ErrType, name, len(args))
		}
		return logic{and: name == "and", l: args[0], r: args[1]}, nil
	case "not", "is_null", "is_not_null":
		if len(args) != 1 {
			return nil, fmt.Errorf("%w: %s takes 1 argument, got %d", ErrType, name, len(args))
		}
		return unary{op: name, x: args[0]}, nil
	case "+", "-", "*", "/", "%":
		if err := arithOperands(args); err != nil {
			return nil, err
		}
		if err := wantArgs(name, args, 2, planpb.DataType_LONG); err != nil {
			return nil, err
		}
		return arith{op: name[0], l: args[0], r: args[1]}, nil
	case "udf":
		return compileUDF(c, args)
	}
	if f, ok := builtin(name); ok {
		return f(&callSite{name: name, call: c, args: args, env: env})
	}
	switch f, err := Funcs.Lookup(c.GetFunction()); {
	case err == nil:
		return bindUDF(c.GetFunction(), f, c.GetArgs(), args)
	case errors.Is(err, registry.ErrDuplicate):
		return nil, fmt.Errorf("%w: %w", ErrUnknownFunction, err)
	}
	return nil, fmt.Errorf("%w %q (built-ins: split, comparisons, <=>, and, or, not, is_null, is_not_null, + - * / %% and %s; register Go functions with engine.RegisterUDF and call them by name or with engine.Udf)", ErrUnknownFunction, c.GetFunction(), builtinNames())
}

// wantArgs checks the argument count and that each argument is of family
// want (string-like or numeric).
func wantArgs(name string, args []Expr, n int, want planpb.DataType) error {
	if len(args) != n {
		return fmt.Errorf("%w: %s takes %d argument(s), got %d", ErrType, name, n, len(args))
	}
	for _, a := range args {
		t := a.Type()
		ok := isNumeric(t)
		if want == planpb.DataType_STRING {
			ok = t == planpb.DataType_STRING || t == planpb.DataType_BINARY
		}
		if !ok {
			return fmt.Errorf("%w: %s does not take a %s argument", ErrType, name, TypeName(t))
		}
	}
	return nil
}

func compileSplit(c *planpb.Call, args []Expr) (Expr, error) {
	if len(args) < 2 || len(args) > 3 {
		return nil, fmt.Errorf("%w: split takes (str, pattern[, limit]), got %d arguments", ErrType, len(args))
	}
	if t := args[0].Type(); t != planpb.DataType_STRING {
		return nil, fmt.Errorf("%w: split needs a string, got %s (cast it first: CAST(value AS STRING))", ErrType, TypeName(t))
	}
	pattern := c.GetArgs()[1].GetLiteral()
	if pattern == nil || pattern.GetValue() == nil {
		return nil, fmt.Errorf("%w: split's pattern must be a string literal", ErrType)
	}
	limit := int64(-1)
	if len(args) == 3 {
		l := c.GetArgs()[2].GetLiteral()
		if l == nil {
			return nil, fmt.Errorf("%w: split's limit must be an integer literal", ErrType)
		}
		limit = l.GetLong()
	}
	sp, err := NewSplitter(pattern.GetString_(), int(limit))
	if err != nil {
		return nil, err
	}
	s := &splitExpr{x: args[0], sp: sp}
	s.append = func(p []byte) { s.arr = append(s.arr, String(p)) }
	return s, nil
}

// compare is a comparison: it holds when bit Compare(l, r)+1 of holds is
// set (bit 0 less, 1 equal, 2 greater).
type compare struct {
	holds uint8
	l, r  Expr
}

var compareOps = map[string]uint8{"=": 0b010, "!=": 0b101, "<": 0b001, "<=": 0b011, ">": 0b100, ">=": 0b110}

func (c *compare) Type() planpb.DataType { return planpb.DataType_BOOLEAN }

func (c *compare) Eval(row Row) Value {
	l := c.l.Eval(row)
	if l.Kind == KindNull {
		return Null
	}
	r := c.r.Eval(row)
	if r.Kind == KindNull {
		return Null
	}
	return Bool(c.holds>>(compareRefs(&l, &r)+1)&1 == 1)
}

// compareColumn is a compare of a column with a literal, the usual filter,
// without calling either side's Eval.
type compareColumn struct {
	holds uint8
	col   int
	lit   Value
}

func (c *compareColumn) Type() planpb.DataType { return planpb.DataType_BOOLEAN }

func (c *compareColumn) Eval(row Row) Value {
	holds, null := c.test(&row[c.col])
	if null {
		return Null
	}
	return Bool(holds)
}

// test compares v with the literal; null reports a null result.
func (c *compareColumn) test(v *Value) (holds, null bool) {
	if v.Kind == KindNull || c.lit.Kind == KindNull {
		return false, true
	}
	return c.holds>>(compareRefs(v, &c.lit)+1)&1 == 1, false
}

// Compare orders two non-null values: numbers numerically, strings and
// binaries bytewise, booleans false first.
func Compare(a, b Value) int { return compareRefs(&a, &b) }

// compareRefs is Compare without copying either Value: on some CPUs the
// copies cost more than comparing two words.
func compareRefs(a, b *Value) int {
	switch {
	case a.Kind == KindDouble || b.Kind == KindDouble:
		x, y := asFloat(a), asFloat(b)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case a.Kind == KindString || a.Kind == KindBinary:
		return bytes.Compare(a.B, b.B)
	}
	switch {
	case a.I < b.I:
		return -1
	case a.I > b.I:
		return 1
	}
	return 0
}

func asFloat(v *Value) float64 {
	if v.Kind == KindDouble {
		return v.F
	}
	return float64(v.I)
}

// logic is SQL's three-valued and/or.
type logic struct {
	and  bool
	l, r Expr
}

func (g logic) Type() planpb.DataType { return planpb.DataType_BOOLEAN }

func (g logic) Eval(row Row) Value {
	l, r := g.l.Eval(row), g.r.Eval(row)
	decisive := int64(0) // false decides an and
	if !g.and {
		decisive = 1 // true decides an or
	}
	if (l.Kind != KindNull && l.I == decisive) || (r.Kind != KindNull && r.I == decisive) {
		return Bool(decisive == 1)
	}
	if l.Kind == KindNull || r.Kind == KindNull {
		return Null
	}
	return Bool(decisive == 0)
}

type unary struct {
	op string
	x  Expr
}

func (u unary) Type() planpb.DataType { return planpb.DataType_BOOLEAN }

func (u unary) Eval(row Row) Value {
	v := u.x.Eval(row)
	switch u.op {
	case "is_null":
		return Bool(v.Kind == KindNull)
	case "is_not_null":
		return Bool(v.Kind != KindNull)
	}
	if v.Kind == KindNull {
		return v
	}
	return Bool(v.I == 0)
}

type arith struct {
	op   byte
	l, r Expr
}

func (a arith) Type() planpb.DataType {
	if a.op == '/' || a.l.Type() == planpb.DataType_DOUBLE || a.r.Type() == planpb.DataType_DOUBLE {
		return planpb.DataType_DOUBLE
	}
	return planpb.DataType_LONG
}

func (a arith) Eval(row Row) Value {
	l, r := a.l.Eval(row), a.r.Eval(row)
	if l.Kind == KindNull || r.Kind == KindNull {
		return Null
	}
	if a.Type() == planpb.DataType_DOUBLE {
		x, y := asFloat(&l), asFloat(&r)
		switch a.op {
		case '+':
			return Double(x + y)
		case '-':
			return Double(x - y)
		case '*':
			return Double(x * y)
		}
		if y == 0 {
			return Null // Spark (non-ANSI): division by zero is null
		}
		if a.op == '%' {
			return Double(math.Mod(x, y)) // the sign of x, as Java's %
		}
		return Double(x / y)
	}
	switch a.op {
	case '+':
		return Long(l.I + r.I)
	case '-':
		return Long(l.I - r.I)
	case '%':
		if r.I == 0 {
			return Null
		}
		return Long(l.I % r.I)
	}
	return Long(l.I * r.I)
}

type udfExpr struct {
	f     Func
	args  []Expr
	widen []bool // argument i is an integer passed as a double
	vals  []Value
}

func compileUDF(c *planpb.Call, args []Expr) (Expr, error) {
	if len(args) == 0 || c.GetArgs()[0].GetLiteral() == nil {
		return nil, fmt.Errorf("%w: udf needs the registered name as its first argument", ErrType)
	}
	name := c.GetArgs()[0].GetLiteral().GetString_()
	f, err := Funcs.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w (register Go functions with engine.RegisterUDF in an init func of a package the binary imports)", ErrUnknownFunction, err)
	}
	return bindUDF(name, f, c.GetArgs()[1:], args[1:])
}

// bindUDF is a call of the registered function f with args, checked
// against its signature; exprs are the arguments' plans, to name a column
// in errors.
func bindUDF(name string, f Func, exprs []*planpb.Expr, args []Expr) (Expr, error) {
	if len(args) != len(f.Args) {
		return nil, fmt.Errorf("%w: function %q %s takes %d argument(s), got %d", ErrType, name, f.Signature(), len(f.Args), len(args))
	}
	u := &udfExpr{f: f, args: args, widen: make([]bool, len(args)), vals: make([]Value, len(args))}
	for i, a := range args {
		have, want := a.Type(), f.Args[i]
		switch {
		case have == want, have == planpb.DataType_INT && want == planpb.DataType_LONG:
		case isNumeric(have) && have != planpb.DataType_DOUBLE && want == planpb.DataType_DOUBLE:
			u.widen[i] = true
		default:
			arg := fmt.Sprintf("argument %d", i+1)
			if col := exprs[i].GetColumn(); col != "" {
				arg += " (" + col + ")"
			}
			return nil, fmt.Errorf("%w: function %q %s: %s is %s, the function takes %s (cast it to %s first)",
				ErrType, name, f.Signature(), arg, TypeName(have), TypeName(want), TypeName(want))
		}
	}
	return u, nil
}

func (u *udfExpr) Type() planpb.DataType { return u.f.Result }

// Eval calls the function, or returns null for a null argument. It panics
// with a *FuncError if the function fails.
func (u *udfExpr) Eval(row Row) Value {
	for i, a := range u.args {
		v := a.Eval(row)
		switch {
		case v.Kind == KindNull:
			return Null
		case u.widen[i]:
			v = Double(float64(v.I))
		}
		u.vals[i] = v
	}
	v, err := u.call()
	if err != nil {
		panic(err)
	}
	return v
}

// call calls the function, turning its error or panic into a *FuncError.
func (u *udfExpr) call() (v Value, err error) {
	defer func() {
		if p := recover(); p != nil {
			perr, ok := p.(error)
			if !ok {
				perr = fmt.Errorf("%v", p)
			}
			err = &FuncError{Func: u.f.Name, Err: perr, Stack: debug.Stack()}
		}
	}()
	if v, err = u.f.Fn(u.vals); err != nil {
		return Null, &FuncError{Func: u.f.Name, Err: err}
	}
	return v, nil
}
