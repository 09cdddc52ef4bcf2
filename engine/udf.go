package engine

import (
	"bytes"
	"fmt"
	"reflect"
	"time"

	"github.com/gostream/gostream/operators"
)

// RegisterUDF makes fn, a Go function, callable by name from queries with
// Udf(name, columns...), as Spark's spark.udf.register:
//
//	engine.RegisterUDF("status_class", func(status int64) string { ... })
//	df.Select(engine.Udf("status_class", engine.Col("status")))
//
// fn's arguments and result are of the Go types of gostream's data types:
// string (String), []byte (Binary), int64 (Long; an Int column also
// fits), int32 (Int), float64 (Double; Int and Long columns also fit),
// bool (Boolean) and time.Time (Timestamp). fn may return an error as a
// second result: an error, or a panic in fn, fails the batch that called it
// (nothing of it is committed) and ends the query with that error, which
// names the function. When a query starts, each Udf call is checked against
// fn's signature: the number of arguments and each argument's type.
//
// Nulls follow Spark's rule for Scala UDFs with primitive arguments: a call
// with a null argument returns null without calling fn (Go's string and
// []byte have no null, so the rule holds for every argument type). fn's
// result is never null.
//
// fn is called from the query's tasks, several at a time: it must be safe
// for concurrent use, and it may keep its arguments (they are copies).
// Register in an init func of a package the binary imports: every worker of
// a cluster must register the same functions (see Fingerprint). Names match
// in any case, as Spark's function names do; the name of a built-in
// function is refused, and so is a name registered twice: it is refused with an error wrapping ErrDuplicate, and the
// name becomes unusable: queries calling it fail analysis rather than run
// either function.
func RegisterUDF(name string, fn any) error {
	f, err := newUDF(name, fn)
	if err != nil {
		return err
	}
	return operators.RegisterFunc(f)
}

// RegisterUDF is the package's RegisterUDF, until Close.
func (r *Registrations) RegisterUDF(name string, fn any) error {
	f, err := newUDF(name, fn)
	if err != nil {
		return err
	}
	return r.funcs.Register(name, f)
}

// udfType is how a Go type crosses into a UDF and back.
type udfType struct {
	t     DataType
	toGo  func(operators.Value) reflect.Value
	fromG func(reflect.Value) operators.Value
}

var (
	errorType = reflect.TypeFor[error]()
	udfTypes  = map[reflect.Type]udfType{
		reflect.TypeFor[string](): {String,
			func(v operators.Value) reflect.Value { return reflect.ValueOf(string(v.B)) },
			func(r reflect.Value) operators.Value { return operators.Str(r.String()) }},
		reflect.TypeFor[[]byte](): {Binary,
			func(v operators.Value) reflect.Value { return reflect.ValueOf(bytes.Clone(v.B)) },
			func(r reflect.Value) operators.Value {
				return operators.Value{Kind: operators.KindBinary, B: bytes.Clone(r.Bytes())} // fn may reuse its result
			}},
		reflect.TypeFor[int64](): {Long,
			func(v operators.Value) reflect.Value { return reflect.ValueOf(v.I) },
			func(r reflect.Value) operators.Value { return operators.Long(r.Int()) }},
		reflect.TypeFor[int32](): {Int,
			func(v operators.Value) reflect.Value { return reflect.ValueOf(int32(v.I)) },
			func(r reflect.Value) operators.Value { return operators.Long(r.Int()) }},
		reflect.TypeFor[float64](): {Double,
			func(v operators.Value) reflect.Value { return reflect.ValueOf(v.F) },
			func(r reflect.Value) operators.Value { return operators.Double(r.Float()) }},
		reflect.TypeFor[bool](): {Boolean,
			func(v operators.Value) reflect.Value { return reflect.ValueOf(v.I != 0) },
			func(r reflect.Value) operators.Value { return operators.Bool(r.Bool()) }},
		reflect.TypeFor[time.Time](): {Timestamp,
			func(v operators.Value) reflect.Value { return reflect.ValueOf(time.UnixMicro(v.I).UTC()) },
			func(r reflect.Value) operators.Value { return operators.Timestamp(r.Interface().(time.Time)) }},
	}
)

const udfTypeList = "string, []byte, int64, int32, float64, bool or time.Time"

// newUDF checks fn's signature and wraps it as an operators.Func.
func newUDF(name string, fn any) (operators.Func, error) {
	v := reflect.ValueOf(fn)
	bad := func(format string, args ...any) (operators.Func, error) {
		return operators.Func{}, fmt.Errorf("%w %q: %s", ErrInvalidUDF, name, fmt.Sprintf(format, args...))
	}
	if operators.IsBuiltin(name) {
		return bad("a built-in function has this name; pick another")
	}
	if v.Kind() != reflect.Func || v.IsNil() {
		return bad("fn is a %T, not a function", fn)
	}
	t := v.Type()
	if t.IsVariadic() {
		return bad("a variadic function (%s) is not supported; take a fixed number of arguments", t)
	}
	f := operators.Func{Name: name}
	in := make([]udfType, t.NumIn())
	for i := range in {
		ut, ok := udfTypes[t.In(i)]
		if !ok {
			return bad("argument %d is a %s; use %s", i+1, t.In(i), udfTypeList)
		}
		in[i] = ut
		f.Args = append(f.Args, ut.t)
	}
	if t.NumOut() == 0 || t.NumOut() > 2 || (t.NumOut() == 2 && t.Out(1) != errorType) {
		return bad("%s must return one value, or a value and an error", t)
	}
	out, ok := udfTypes[t.Out(0)]
	if !ok {
		return bad("its result is a %s; use %s", t.Out(0), udfTypeList)
	}
	f.Result = out.t
	withErr := t.NumOut() == 2
	f.Fn = func(args []operators.Value) (operators.Value, error) {
		rargs := make([]reflect.Value, len(args))
		for i, a := range args {
			rargs[i] = in[i].toGo(a)
		}
		res := v.Call(rargs)
		if withErr && !res[1].IsNil() {
			return operators.Null, res[1].Interface().(error)
		}
		return out.fromG(res[0]), nil
	}
	return f, nil
}
