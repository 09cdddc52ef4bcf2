// Package sqlexpr parses Spark SQL expression strings, the language of
// selectExpr, expr and filter("..."), into a small syntax tree.
//
// It is a hand-written recursive-descent parser of the part of Spark's
// grammar gostream runs: column references, literals, arithmetic,
// comparisons, AND/OR/NOT, IS [NOT] NULL, [NOT] IN, [NOT] LIKE/RLIKE,
// [NOT] BETWEEN, CASE, CAST, function calls, x[i], x.field, aliases and *. Anything
// else is an *Error naming the construct and its byte offset. It knows
// nothing of schemas or functions: the engine resolves names.
package sqlexpr

import (
	"fmt"

	"github.com/gostream/gostream/proto/planpb"
)

// Node is a parsed expression. Pos is its byte offset in the input.
type Node interface{ Pos() int }

// Column is a column reference: a name, or a dotted path a.b.c (the fields
// b then c of the struct column a).
type Column struct {
	At    int
	Parts []string
}

// Star is *, all the columns.
type Star struct{ At int }

// Literal is a constant: nil, string, int64, float64 or bool.
type Literal struct {
	At    int
	Value any
}

// Unary is -x, +x or NOT x (Op "-", "+", "NOT").
type Unary struct {
	At int
	Op string
	X  Node
}

// Binary is an arithmetic, comparison or boolean operation. Op is one of
// + - * / % || = != < <= > >= <=> AND OR (== is =, <> is !=).
type Binary struct {
	At   int
	Op   string
	L, R Node
}

// IsNull is x IS [NOT] NULL.
type IsNull struct {
	At  int
	X   Node
	Not bool
}

// In is x [NOT] IN (list...).
type In struct {
	At   int
	X    Node
	List []Node
	Not  bool
}

// Like is x [NOT] LIKE pattern [ESCAPE 'c'] or, with Regex, x [NOT] RLIKE
// pattern (REGEXP is RLIKE). Escape is empty when not given.
type Like struct {
	At         int
	X, Pattern Node
	Escape     string
	Regex, Not bool
}

// Between is x [NOT] BETWEEN Lo AND Hi.
type Between struct {
	At        int
	X, Lo, Hi Node
	Not       bool
}

// Case is CASE [Operand] WHEN w THEN t ... [ELSE e] END; Else is nil when
// absent.
type Case struct {
	At          int
	Operand     Node
	Whens, Then []Node
	Else        Node
}

// Cast is CAST(x AS type).
type Cast struct {
	At int
	X  Node
	To planpb.DataType
}

// Call is a function call; Name is as written.
type Call struct {
	At   int
	Name string
	Args []Node
}

// Field is x.name, a field of a struct that is not a plain column path
// (from_json(...).level); a.b.c is a Column.
type Field struct {
	At   int
	X    Node
	Name string
}

// Index is x[i], 0-based.
type Index struct {
	At   int
	X, I Node
}

func (n *Column) Pos() int  { return n.At }
func (n *Star) Pos() int    { return n.At }
func (n *Literal) Pos() int { return n.At }
func (n *Unary) Pos() int   { return n.At }
func (n *Binary) Pos() int  { return n.At }
func (n *IsNull) Pos() int  { return n.At }
func (n *In) Pos() int      { return n.At }
func (n *Like) Pos() int    { return n.At }
func (n *Between) Pos() int { return n.At }
func (n *Case) Pos() int    { return n.At }
func (n *Cast) Pos() int    { return n.At }
func (n *Call) Pos() int    { return n.At }
func (n *Index) Pos() int   { return n.At }
func (n *Field) Pos() int   { return n.At }

// Named is a parsed expression and its alias ("" when none was given).
type Named struct {
	X     Node
	Alias string
}

// Error is a parse error, or a construct gostream does not support, at a
// byte offset of the input.
type Error struct {
	Pos  int
	Near string // the text at Pos, or "end of input"
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (at %d: %s)", e.Msg, e.Pos, e.Near) }

func errAt(pos int, near, msg string) *Error { return &Error{Pos: pos, Near: near, Msg: msg} }

// ErrorAt is an *Error at byte offset pos of src, showing the token there.
func ErrorAt(src string, pos int, msg string) *Error {
	e := errAt(pos, "end of input", msg)
	if pos < len(src) {
		if t, err := lexOne(src, pos); err == nil {
			e.Near = near(src, t)
		}
	}
	return e
}
