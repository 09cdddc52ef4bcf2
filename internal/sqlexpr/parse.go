package sqlexpr

import (
	"math"
	"strconv"
	"strings"

	"github.com/gostream/gostream/proto/planpb"
)

// maxDepth bounds the nesting of an expression, so that a hostile input
// ("((((...") is an error, not a stack overflow.
const maxDepth = 200

// Parse parses one expression with an optional alias (expr AS name, or
// expr name), as Spark's selectExpr takes it.
func Parse(s string) (Named, error) {
	toks, err := lex(s)
	if err != nil {
		return Named{}, err
	}
	p := &parser{src: s, toks: toks}
	n, err := p.named()
	if err != nil {
		return Named{}, err
	}
	return n, nil
}

type parser struct {
	src   string
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

// accept consumes the next token if it is the keyword or operator s.
func (p *parser) accept(s string) bool {
	t := p.peek()
	if t.is(s) || t.isOp(s) {
		p.i++
		return true
	}
	return false
}

// near is how an error shows token t: as written in src.
func near(src string, t token) string {
	if t.kind == tEOF {
		return "end of input"
	}
	return src[t.pos:t.end]
}

func (p *parser) errHere(msg string) *Error {
	t := p.peek()
	return errAt(t.pos, near(p.src, t), msg)
}

func (p *parser) expect(s, context string) error {
	if p.accept(s) {
		return nil
	}
	return p.errHere("expected " + s + " " + context)
}

// unsupported names constructs of Spark SQL that gostream does not run, by
// the keyword that starts them.
var unsupported = map[string]string{
	"OVER":     "window functions are not supported",
	"SELECT":   "subqueries are not supported",
	"EXISTS":   "subqueries are not supported",
	"INTERVAL": "interval literals are not supported",
	"DATE":     "typed literals are not supported (use CAST('...' AS ...))",
	"DIV":      "integral division (DIV) is not supported (use CAST(a / b AS BIGINT))",
	"ILIKE":    "ILIKE is not supported (use lower(x) LIKE ...)",
	"FILTER":   "aggregate FILTER clauses are not supported",
	"DISTINCT": "DISTINCT in a function call is not supported",
}

// reserved words end an expression: they cannot be an alias written
// without AS, nor a column name unless backticked.
var reserved = map[string]bool{
	"AND": true, "OR": true, "NOT": true, "IS": true, "IN": true, "LIKE": true, "RLIKE": true,
	"REGEXP": true, "BETWEEN": true, "AS": true, "CASE": true, "WHEN": true, "THEN": true,
	"ELSE": true, "END": true, "ESCAPE": true, "NULL": true, "TRUE": true, "FALSE": true,
	"FROM": true, "CAST": true,
}

func isReserved(t token) bool {
	if t.kind != tIdent {
		return false
	}
	u := strings.ToUpper(t.text)
	return reserved[u] || unsupported[u] != ""
}

func (p *parser) named() (Named, error) {
	x, err := p.expr()
	if err != nil {
		return Named{}, err
	}
	n := Named{X: x}
	t := p.peek()
	switch {
	case t.is("AS"):
		p.next()
		a := p.next()
		if a.kind != tIdent && a.kind != tQuoted {
			return Named{}, errAt(a.pos, near(p.src, a), "expected a name after AS")
		}
		if p.accept("(") {
			return Named{}, errAt(a.pos, near(p.src, a), "multiple aliases AS (a, b) are not supported")
		}
		n.Alias = a.text
	case t.kind == tQuoted, t.kind == tIdent && !isReserved(t):
		n.Alias = p.next().text
	}
	if t := p.peek(); t.kind != tEOF {
		if msg := unsupported[strings.ToUpper(t.text)]; t.kind == tIdent && msg != "" {
			return Named{}, p.errHere(msg)
		}
		return Named{}, p.errHere("unexpected " + near(p.src, t) + " after the expression")
	}
	return n, nil
}

func (p *parser) expr() (Node, error) {
	if p.depth++; p.depth > maxDepth {
		return nil, p.errHere("expression nested too deeply")
	}
	defer func() { p.depth-- }()
	return p.or()
}

// Binary operators by precedence level, lowest first: token text (keywords
// in upper case) to the operator of the Binary node.
var (
	orOps             = map[string]string{"OR": "OR"}
	andOps            = map[string]string{"AND": "AND"}
	comparisonOps     = map[string]string{"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "<=>": "<=>"}
	additiveOps       = map[string]string{"+": "+", "-": "-", "||": "||"}
	multiplicativeOps = map[string]string{"*": "*", "/": "/", "%": "%"}
)

// leftAssoc parses operands joined, left to right, by the operators ops.
func (p *parser) leftAssoc(operand func() (Node, error), ops map[string]string) (Node, error) {
	l, err := operand()
	for err == nil {
		t := p.peek()
		text := t.text
		if t.kind == tIdent {
			text = strings.ToUpper(text)
			if msg := unsupported[text]; msg != "" {
				return nil, p.errHere(msg)
			}
		} else if t.kind != tOp {
			break
		}
		op, ok := ops[text]
		if !ok {
			break
		}
		p.next()
		var r Node
		if r, err = operand(); err == nil {
			l = &Binary{At: t.pos, Op: op, L: l, R: r}
		}
	}
	return l, err
}

func (p *parser) or() (Node, error)  { return p.leftAssoc(p.and, orOps) }
func (p *parser) and() (Node, error) { return p.leftAssoc(p.not, andOps) }

func (p *parser) not() (Node, error) {
	if t := p.peek(); t.is("NOT") || t.isOp("!") {
		p.next()
		if p.depth++; p.depth > maxDepth {
			return nil, p.errHere("expression nested too deeply")
		}
		defer func() { p.depth-- }()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &Unary{At: t.pos, Op: "NOT", X: x}, nil
	}
	return p.predicate()
}

// predicate is a comparison followed by at most one IS / IN / LIKE /
// BETWEEN test.
func (p *parser) predicate() (Node, error) {
	x, err := p.comparison()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if t.is("IS") {
		p.next()
		not := p.accept("NOT")
		switch u := p.peek(); {
		case u.is("NULL"):
			p.next()
			return &IsNull{At: t.pos, X: x, Not: not}, nil
		case u.is("TRUE"), u.is("FALSE"), u.is("UNKNOWN"), u.is("DISTINCT"):
			return nil, p.errHere("IS " + strings.ToUpper(u.text) + " is not supported (use IS NULL, = or <=>)")
		}
		return nil, p.errHere("expected NULL after IS")
	}
	not := false
	if t.is("NOT") {
		if u := p.toks[p.i+1]; u.is("IN") || u.is("LIKE") || u.is("RLIKE") || u.is("REGEXP") || u.is("BETWEEN") || u.is("ILIKE") {
			p.next()
			not, t = true, u
		}
	}
	switch {
	case t.is("IN"):
		p.next()
		if err := p.expect("(", "after IN"); err != nil {
			return nil, err
		}
		if u := p.peek(); u.is("SELECT") {
			return nil, p.errHere(unsupported["SELECT"])
		}
		list, err := p.list("IN")
		if err != nil {
			return nil, err
		}
		if len(list) == 0 {
			return nil, errAt(t.pos, near(p.src, t), "IN needs at least one value")
		}
		return &In{At: t.pos, X: x, List: list, Not: not}, nil
	case t.is("LIKE"), t.is("RLIKE"), t.is("REGEXP"):
		p.next()
		if u := p.peek(); u.is("ANY") || u.is("ALL") || u.is("SOME") {
			return nil, p.errHere("LIKE " + strings.ToUpper(u.text) + " is not supported")
		}
		pat, err := p.comparison()
		if err != nil {
			return nil, err
		}
		l := &Like{At: t.pos, X: x, Pattern: pat, Regex: !t.is("LIKE"), Not: not}
		if p.peek().is("ESCAPE") {
			if l.Regex {
				return nil, p.errHere("ESCAPE applies to LIKE, not RLIKE")
			}
			p.next()
			e := p.next()
			if e.kind != tString || len([]rune(e.text)) != 1 {
				return nil, errAt(e.pos, near(p.src, e), "ESCAPE takes a string of one character")
			}
			l.Escape = e.text
		}
		return l, nil
	case t.is("BETWEEN"):
		p.next()
		lo, hi, err := p.pair(p.comparison, "AND", "in BETWEEN ... AND ...")
		if err != nil {
			return nil, err
		}
		return &Between{At: t.pos, X: x, Lo: lo, Hi: hi, Not: not}, nil
	case t.is("ILIKE"):
		return nil, p.errHere(unsupported["ILIKE"])
	}
	return x, nil
}

func (p *parser) comparison() (Node, error) { return p.leftAssoc(p.additive, comparisonOps) }
func (p *parser) additive() (Node, error)   { return p.leftAssoc(p.multiplicative, additiveOps) }
func (p *parser) multiplicative() (Node, error) {
	return p.leftAssoc(p.unary, multiplicativeOps)
}

func (p *parser) unary() (Node, error) {
	t := p.peek()
	switch {
	case t.isOp("-"), t.isOp("+"):
		p.next()
		if p.depth++; p.depth > maxDepth {
			return nil, p.errHere("expression nested too deeply")
		}
		defer func() { p.depth-- }()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if l, ok := x.(*Literal); ok && t.text == "-" {
			switch v := l.Value.(type) {
			case int64:
				return &Literal{At: t.pos, Value: -v}, nil
			case float64:
				return &Literal{At: t.pos, Value: -v}, nil
			}
		}
		return &Unary{At: t.pos, Op: t.text, X: x}, nil
	case t.isOp("~"), t.isOp("&"), t.isOp("|"), t.isOp("^"):
		return nil, p.errHere("bitwise operators are not supported")
	}
	return p.postfix()
}

func (p *parser) postfix() (Node, error) {
	x, err := p.primary()
	for err == nil {
		t := p.peek()
		switch {
		case t.isOp("["):
			p.next()
			var i Node
			if i, err = p.expr(); err != nil {
				return nil, err
			}
			if err = p.expect("]", "after the index"); err != nil {
				return nil, err
			}
			x = &Index{At: t.pos, X: x, I: i}
		case t.isOp("."):
			p.next()
			f := p.next()
			if f.kind != tIdent && f.kind != tQuoted {
				return nil, errAt(f.pos, near(p.src, f), "expected a field name after .")
			}
			x = &Field{At: t.pos, X: x, Name: f.text}
		case t.isOp("::"):
			return nil, p.errHere(":: casts are not supported (use CAST(x AS type))")
		case t.isOp("->"):
			return nil, p.errHere("lambda functions are not supported")
		default:
			return x, nil
		}
	}
	return x, err
}

func (p *parser) primary() (Node, error) {
	t := p.peek()
	switch t.kind {
	case tString:
		p.next()
		s := t.text
		for p.peek().kind == tString { // 'a' 'b' is 'ab', as in Spark
			s += p.next().text
		}
		return &Literal{At: t.pos, Value: s}, nil
	case tNumber:
		p.next()
		return number(t)
	case tQuoted:
		if p.toks[p.i+1].isOp("(") {
			return p.call()
		}
		return p.column()
	case tOp:
		switch t.text {
		case "(":
			p.next()
			if p.peek().is("SELECT") {
				return nil, p.errHere(unsupported["SELECT"])
			}
			x, err := p.expr()
			if err != nil {
				return nil, err
			}
			if p.peek().isOp(",") {
				return nil, p.errHere("row values (a, b) are not supported")
			}
			return x, p.expect(")", "to close (")
		case "*":
			p.next()
			return &Star{At: t.pos}, nil
		}
		return nil, p.errHere("expected an expression")
	case tEOF:
		return nil, p.errHere("expected an expression")
	}
	// An identifier: a keyword, a function call or a column.
	switch u := strings.ToUpper(t.text); {
	case u == "NULL":
		p.next()
		return &Literal{At: t.pos}, nil
	case u == "TRUE", u == "FALSE":
		p.next()
		return &Literal{At: t.pos, Value: u == "TRUE"}, nil
	case u == "CASE":
		return p.caseExpr()
	case u == "CAST", u == "TRY_CAST":
		return p.cast()
	case u == "TIMESTAMP" && p.toks[p.i+1].kind == tString:
		p.next()
		lit, err := p.primary() // the string, with adjacent ones joined
		return &Cast{At: t.pos, X: lit, To: planpb.DataType_TIMESTAMP}, err
	case (u == "CURRENT_TIMESTAMP" || u == "CURRENT_DATE") && !p.toks[p.i+1].isOp("("):
		p.next()
		return &Call{At: t.pos, Name: t.text}, nil // Spark takes these without ()
	case (u == "DATE" || u == "X" || u == "TIMESTAMP_NTZ" || u == "TIMESTAMP_LTZ") && p.toks[p.i+1].kind == tString:
		return nil, p.errHere("typed literals are not supported (use CAST('...' AS ...))")
	case (u == "LIKE" || u == "RLIKE" || u == "REGEXP") && p.toks[p.i+1].isOp("("):
		return p.call() // like(str, pattern), Spark's function form
	case unsupported[u] != "":
		return nil, p.errHere(unsupported[u])
	case reserved[u]:
		return nil, p.errHere("expected an expression")
	}
	if p.toks[p.i+1].isOp("(") {
		return p.call()
	}
	return p.column()
}

// number converts a number token: an integer is a bigint (a double when it
// overflows one), a decimal or exponent a double; the suffixes L (bigint),
// D (double) and BD (decimal, read as double) are Spark's.
func number(t token) (Node, error) {
	s := t.text
	digits := strings.TrimRight(s, "abcdfghijklmnopqrstuvwxyzABCDFGHIJKLMNOPQRSTUVWXYZ_") // not e: 1e3
	suffix := strings.ToUpper(s[len(digits):])
	integral := !strings.ContainsAny(digits, ".eE")
	switch suffix {
	case "", "BD", "D":
	case "L":
		if !integral {
			return nil, errAt(t.pos, s, "L needs an integer")
		}
	case "S", "Y":
		return nil, errAt(t.pos, s, "SMALLINT and TINYINT literals are not supported (use an integer)")
	case "F":
		return nil, errAt(t.pos, s, "FLOAT literals are not supported (use a double: 1.5D)")
	default:
		return nil, errAt(t.pos, s, "invalid number")
	}
	if integral && suffix != "D" && suffix != "BD" {
		if i, err := strconv.ParseInt(digits, 10, 64); err == nil {
			return &Literal{At: t.pos, Value: i}, nil
		} else if suffix == "L" {
			return nil, errAt(t.pos, s, "out of the range of BIGINT")
		}
	}
	f, err := strconv.ParseFloat(digits, 64)
	if err != nil && !math.IsInf(f, 0) {
		return nil, errAt(t.pos, s, "invalid number")
	}
	if math.IsInf(f, 0) {
		return nil, errAt(t.pos, s, "out of the range of DOUBLE")
	}
	return &Literal{At: t.pos, Value: f}, nil
}

// column reads a name or a dotted path: a, `a b`, a.b, `a.b`.c.
func (p *parser) column() (Node, error) {
	t := p.next()
	c := &Column{At: t.pos, Parts: []string{t.text}}
	for p.peek().isOp(".") {
		p.next()
		u := p.next()
		switch {
		case u.isOp("*"):
			return nil, errAt(u.pos, near(p.src, u), "qualified * is not supported (use *)")
		case u.kind != tIdent && u.kind != tQuoted:
			return nil, errAt(u.pos, near(p.src, u), "expected a name after .")
		}
		c.Parts = append(c.Parts, u.text)
	}
	return c, nil
}

// standardForms are the functions Spark also takes in SQL-standard syntax
// (TRIM(BOTH 'x' FROM s), SUBSTRING(s FROM 2 FOR 3), ...), and the keywords
// that mark it.
var standardForms = map[string]map[string]bool{
	"TRIM":      {"BOTH": true, "LEADING": true, "TRAILING": true, "FROM": true},
	"SUBSTRING": {"FROM": true, "FOR": true},
	"SUBSTR":    {"FROM": true, "FOR": true},
	"POSITION":  {"IN": true},
	"EXTRACT":   {"FROM": true},
	"OVERLAY":   {"PLACING": true, "FROM": true, "FOR": true},
}

// standardForm reports the first keyword of a SQL-standard call form in the
// arguments of the call of name, whose ( was just read.
func (p *parser) standardForm(name string) (token, bool) {
	kws := standardForms[strings.ToUpper(name)]
	depth := 0
	for _, t := range p.toks[p.i:] {
		switch {
		case t.isOp("("):
			depth++
		case t.isOp(")"):
			if depth--; depth < 0 {
				return token{}, false
			}
		case depth == 0 && t.kind == tIdent && kws[strings.ToUpper(t.text)]:
			return t, true
		}
	}
	return token{}, false
}

func (p *parser) call() (Node, error) {
	name := p.next()
	p.next() // (
	c := &Call{At: name.pos, Name: name.text}
	if kw, ok := p.standardForm(name.text); ok {
		return nil, errAt(kw.pos, near(p.src, kw), "the SQL-standard form "+strings.ToUpper(name.text)+"(... "+strings.ToUpper(kw.text)+" ...) is not supported (call it with commas: trim(str, trimStr), ltrim, rtrim, substring(str, pos, len))")
	}
	switch u := p.peek(); {
	case u.is("DISTINCT"), u.is("ALL"):
		return nil, p.errHere(strings.ToUpper(u.text) + " in a function call is not supported")
	case u.isOp("*") && p.toks[p.i+1].isOp(")"):
		p.next()
		c.Args = []Node{&Star{At: u.pos}}
		p.next()
	default:
		args, err := p.list(name.text)
		if err != nil {
			return nil, err
		}
		c.Args = args
	}
	if t := p.peek(); t.is("OVER") || t.is("FILTER") {
		return nil, p.errHere(unsupported[strings.ToUpper(t.text)])
	}
	return c, nil
}

// list reads comma-separated expressions up to and including ")"; the (
// was read.
func (p *parser) list(of string) ([]Node, error) {
	var out []Node
	if p.accept(")") {
		return out, nil
	}
	for {
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		out = append(out, x)
		if p.accept(")") {
			return out, nil
		}
		if t := p.peek(); t.isOp("->") {
			return nil, p.errHere("lambda functions are not supported")
		}
		if !p.accept(",") {
			return nil, p.errHere("expected , or ) in the arguments of " + of)
		}
	}
}

// pair parses two operands around the keyword sep: a AND b, w THEN t.
func (p *parser) pair(operand func() (Node, error), sep, context string) (a, b Node, err error) {
	if a, err = operand(); err != nil {
		return nil, nil, err
	}
	if err = p.expect(sep, context); err != nil {
		return nil, nil, err
	}
	if b, err = operand(); err != nil {
		return nil, nil, err
	}
	return a, b, nil
}

func (p *parser) caseExpr() (Node, error) {
	c := &Case{At: p.next().pos}
	if p.peek().is("END") {
		return nil, p.errHere("expected WHEN in CASE")
	}
	if !p.peek().is("WHEN") {
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Operand = x
	}
	for p.accept("WHEN") {
		w, t, err := p.pair(p.expr, "THEN", "after CASE ... WHEN ...")
		if err != nil {
			return nil, err
		}
		c.Whens, c.Then = append(c.Whens, w), append(c.Then, t)
	}
	if len(c.Whens) == 0 {
		return nil, p.errHere("expected WHEN in CASE")
	}
	if p.accept("ELSE") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Else = e
	}
	return c, p.expect("END", "to close CASE")
}

// types maps Spark's type names to gostream's types.
var types = map[string]planpb.DataType{
	"STRING": planpb.DataType_STRING,
	"BINARY": planpb.DataType_BINARY,
	"BIGINT": planpb.DataType_LONG, "LONG": planpb.DataType_LONG,
	"INT": planpb.DataType_INT, "INTEGER": planpb.DataType_INT,
	"DOUBLE":  planpb.DataType_DOUBLE,
	"BOOLEAN": planpb.DataType_BOOLEAN, "BOOL": planpb.DataType_BOOLEAN,
	"TIMESTAMP": planpb.DataType_TIMESTAMP,
}

func (p *parser) cast() (Node, error) {
	kw := p.next()
	if strings.EqualFold(kw.text, "TRY_CAST") {
		return nil, errAt(kw.pos, near(p.src, kw), "TRY_CAST is not supported (CAST already gives null for a value it cannot convert)")
	}
	if err := p.expect("(", "after CAST"); err != nil {
		return nil, err
	}
	x, err := p.expr()
	if err != nil {
		return nil, err
	}
	if err := p.expect("AS", "in CAST(x AS type)"); err != nil {
		return nil, err
	}
	t := p.next()
	to, ok := types[strings.ToUpper(t.text)]
	if t.kind != tIdent || !ok {
		return nil, errAt(t.pos, near(p.src, t), "CAST to "+near(p.src, t)+" is not supported (types: STRING, BINARY, BIGINT, INT, DOUBLE, BOOLEAN, TIMESTAMP)")
	}
	return &Cast{At: kw.pos, X: x, To: to}, p.expect(")", "to close CAST")
}
