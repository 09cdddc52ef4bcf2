package operators

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/gostream/gostream/proto/planpb"
)

// stringFuncs are Spark's string functions, with Spark's semantics: null in
// (any argument) is null out unless said otherwise, positions count
// characters from 1, and regular expressions are Java's (compileJavaRegex).
// String arguments take string or binary values; numbers, booleans and
// timestamps are cast to string first. Characters are counted in the value
// as ToValidUTF8 shows it.
var stringFuncs = map[string]compileFunc{
	"lower":            compileCase,
	"lcase":            compileCase,
	"upper":            compileCase,
	"ucase":            compileCase,
	"length":           compileLength,
	"char_length":      compileLength,
	"character_length": compileLength,
	"trim":             compileTrim,
	"ltrim":            compileTrim,
	"rtrim":            compileTrim,
	"substring":        compileSubstring,
	"substr":           compileSubstring,
	"substring_index":  compileSubstringIndex,
	"concat":           compileConcat,
	"concat_ws":        compileConcatWs,
	"contains":         compileMatch,
	"startswith":       compileMatch,
	"endswith":         compileMatch,
	"like":             compileLike,
	"rlike":            compileRlike,
	"regexp":           compileRlike,
	"regexp_like":      compileRlike,
	"regexp_extract":   compileRegexpExtract,
	"regexp_replace":   compileRegexpReplace,
	"element_at":       compileElementAt,
	"get_item":         compileElementAt,
}

// funcExpr is an expression made of a function over its arguments' values,
// none of them null: eval's result may reference buf, which it may grow.
type funcExpr struct {
	args []Expr
	vals []Value
	t    planpb.DataType
	eval func(f *funcExpr, vals []Value) Value
	buf  []byte
}

func newFuncExpr(t planpb.DataType, args []Expr, eval func(f *funcExpr, vals []Value) Value) *funcExpr {
	return &funcExpr{args: args, vals: make([]Value, len(args)), t: t, eval: eval}
}

func (f *funcExpr) Type() planpb.DataType { return f.t }

func (f *funcExpr) Eval(row Row) Value {
	for i, a := range f.args {
		v := a.Eval(row)
		if v.Kind == KindNull {
			return Null
		}
		f.vals[i] = v
	}
	return f.eval(f, f.vals)
}

// strResult is a string value of f's type (binary when the function works
// on binaries) referencing b.
func (f *funcExpr) strResult(b []byte) Value { return Value{Kind: kindOf(f.t), B: b} }

// resultType is string, or binary when every argument is binary (Spark's
// functions on bytes).
func resultType(args []Expr) planpb.DataType {
	if len(args) == 0 {
		return planpb.DataType_STRING
	}
	for _, a := range args {
		if a.Type() != planpb.DataType_BINARY {
			return planpb.DataType_STRING
		}
	}
	return planpb.DataType_BINARY
}

// text returns v's bytes as characters are counted in: ToValidUTF8 for
// strings, the bytes themselves for binaries.
func text(v Value) []byte {
	if v.Kind == KindString {
		return ToValidUTF8(v.B)
	}
	return v.B
}

func compileCase(cs *callSite) (Expr, error) {
	if err := cs.arity(1, 1); err != nil {
		return nil, err
	}
	x, err := cs.str(0)
	if err != nil {
		return nil, err
	}
	from, to := byte('A'), bytes.ToLower
	if cs.name == "upper" || cs.name == "ucase" {
		from, to = 'a', bytes.ToUpper
	}
	return newFuncExpr(planpb.DataType_STRING, []Expr{x}, func(f *funcExpr, v []Value) Value {
		f.buf = appendCase(f.buf[:0], v[0].B, from, to)
		return String(f.buf)
	}), nil
}

// appendCase appends b mapped by to (bytes.ToLower or ToUpper, after
// ToValidUTF8). An ASCII b, the common case, is mapped in dst without to's
// allocation: from is the first letter to map ('A' lowers, 'a' uppers).
func appendCase(dst, b []byte, from byte, to func([]byte) []byte) []byte {
	if !isASCII(b) {
		return append(dst, to(ToValidUTF8(b))...)
	}
	n := len(dst)
	dst = append(dst, b...)
	for i, c := range dst[n:] {
		if c-from < 26 {
			dst[n+i] = c ^ 0x20
		}
	}
	return dst
}

func isASCII(b []byte) bool {
	var or byte
	for _, c := range b {
		or |= c
	}
	return or < utf8.RuneSelf
}

// charCount counts the characters of v: bytes of a binary, code points of
// a string as ToValidUTF8 shows it.
func charCount(v Value) int {
	if v.Kind == KindBinary || isASCII(v.B) {
		return len(v.B)
	}
	return utf8.RuneCount(ToValidUTF8(v.B))
}

func compileLength(cs *callSite) (Expr, error) {
	if err := cs.arity(1, 1); err != nil {
		return nil, err
	}
	x, err := cs.str(0)
	if err != nil {
		return nil, err
	}
	return newFuncExpr(planpb.DataType_INT, []Expr{x}, func(_ *funcExpr, v []Value) Value {
		return Long(int64(charCount(v[0])))
	}), nil
}

// compileTrim is trim, ltrim and rtrim (str[, trimStr]): without trimStr
// they remove spaces (U+0020 only, as Spark), with it any of its characters.
func compileTrim(cs *callSite) (Expr, error) {
	if err := cs.arity(1, 2); err != nil {
		return nil, err
	}
	args, err := cs.strs(0)
	if err != nil {
		return nil, err
	}
	left, right := cs.name != "rtrim", cs.name != "ltrim"
	return newFuncExpr(resultType(args[:1]), args, func(f *funcExpr, v []Value) Value {
		b, set := v[0].B, " "
		if len(v) == 2 {
			b, set = text(v[0]), string(text(v[1]))
		}
		if left {
			b = bytes.TrimLeft(b, set)
		}
		if right {
			b = bytes.TrimRight(b, set)
		}
		return f.strResult(b)
	}), nil
}

// compileSubstring is substring(str, pos[, len]): len characters from the
// 1-based position pos; a negative pos counts from the end, 0 is 1 (Spark's
// UTF8String.substringSQL).
func compileSubstring(cs *callSite) (Expr, error) {
	if err := cs.arity(2, 3); err != nil {
		return nil, err
	}
	x, err := cs.str(0)
	if err != nil {
		return nil, err
	}
	args := []Expr{x}
	for i := 1; i < len(cs.args); i++ {
		a, err := cs.integer(i)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
	}
	return newFuncExpr(x.Type(), args, func(f *funcExpr, v []Value) Value {
		length := int64(1<<31 - 1)
		if len(v) == 3 {
			length = v[2].I
		}
		return f.strResult(substring(text(v[0]), v[0].Kind == KindBinary, v[1].I, length))
	}), nil
}

func substring(b []byte, bin bool, pos, length int64) []byte {
	var n int64
	if bin || isASCII(b) {
		n = int64(len(b))
	} else {
		n = int64(utf8.RuneCount(b))
	}
	start := int64(0)
	switch {
	case pos > 0:
		start = pos - 1
	case pos < 0:
		start = n + pos
	}
	end := min(start+length, n)
	if length > n { // start+length may overflow
		end = n
	}
	start = max(start, 0)
	if start >= end {
		return b[:0]
	}
	if bin || int64(len(b)) == n {
		return b[start:end]
	}
	return b[runeOffset(b, int(start)):runeOffset(b, int(end))]
}

// runeOffset is the byte offset of the i-th character of the valid UTF-8 b.
func runeOffset(b []byte, i int) int {
	off := 0
	for ; i > 0 && off < len(b); i-- {
		_, k := utf8.DecodeRune(b[off:])
		off += k
	}
	return off
}

// compileSubstringIndex is substring_index(str, delim, count): str before
// the count-th delim from the left, or after the count-th from the right
// for a negative count; all of str when there are fewer, "" for a count of
// 0 or an empty delim. Occurrences may overlap, as in Spark.
func compileSubstringIndex(cs *callSite) (Expr, error) {
	if err := cs.arity(3, 3); err != nil {
		return nil, err
	}
	s, err := cs.str(0)
	if err != nil {
		return nil, err
	}
	d, err := cs.str(1)
	if err != nil {
		return nil, err
	}
	n, err := cs.integer(2)
	if err != nil {
		return nil, err
	}
	return newFuncExpr(s.Type(), []Expr{s, d, n}, func(f *funcExpr, v []Value) Value {
		return f.strResult(substringIndex(text(v[0]), text(v[1]), v[2].I))
	}), nil
}

func substringIndex(b, delim []byte, count int64) []byte {
	if len(delim) == 0 || count == 0 {
		return b[:0]
	}
	if count > 0 {
		idx := -1
		for ; count > 0; count-- {
			i := bytes.Index(b[idx+1:], delim)
			if i < 0 {
				return b
			}
			idx += 1 + i
		}
		return b[:idx]
	}
	idx := len(b) - len(delim) + 1
	for ; count < 0; count++ {
		if idx <= 0 {
			return b
		}
		idx = bytes.LastIndex(b[:min(idx-1+len(delim), len(b))], delim)
		if idx < 0 {
			return b
		}
	}
	return b[idx+len(delim):]
}

// compileConcat is concat(...): null if any argument is null.
func compileConcat(cs *callSite) (Expr, error) {
	args, err := cs.strs(0)
	if err != nil {
		return nil, err
	}
	return newFuncExpr(resultType(args), args, func(f *funcExpr, v []Value) Value {
		f.buf = f.buf[:0]
		for _, x := range v {
			f.buf = append(f.buf, x.B...)
		}
		return f.strResult(f.buf)
	}), nil
}

// concatWs is concat_ws(sep, ...): the non-null arguments (and the non-null
// elements of array arguments) joined by sep; null only for a null sep.
type concatWs struct {
	sep  Expr
	args []Expr
	buf  []byte
}

func compileConcatWs(cs *callSite) (Expr, error) {
	if err := cs.arity(1, 1<<20); err != nil {
		return nil, err
	}
	sep, err := cs.str(0)
	if err != nil {
		return nil, err
	}
	c := &concatWs{sep: sep}
	for i := 1; i < len(cs.args); i++ {
		a := cs.args[i]
		if a.Type() != planpb.DataType_ARRAY_STRING {
			if a, err = cs.str(i); err != nil {
				return nil, err
			}
		}
		c.args = append(c.args, a)
	}
	return c, nil
}

func (c *concatWs) Type() planpb.DataType { return planpb.DataType_STRING }

func (c *concatWs) Eval(row Row) Value {
	sep := c.sep.Eval(row)
	if sep.Kind == KindNull {
		return Null
	}
	c.buf = c.buf[:0]
	first := true
	add := func(v Value) {
		if v.Kind == KindNull {
			return
		}
		if !first {
			c.buf = append(c.buf, sep.B...)
		}
		c.buf, first = append(c.buf, v.B...), false
	}
	for _, a := range c.args {
		v := a.Eval(row)
		if v.Kind == KindArray {
			for _, e := range v.A {
				add(e)
			}
			continue
		}
		add(v)
	}
	return String(c.buf)
}

// compileMatch is contains, startswith and endswith (left, right): whether
// right occurs in, starts or ends left; an empty right always does.
func compileMatch(cs *callSite) (Expr, error) {
	if err := cs.arity(2, 2); err != nil {
		return nil, err
	}
	args, err := cs.strs(0)
	if err != nil {
		return nil, err
	}
	test := map[string]func(s, sub []byte) bool{
		"contains": bytes.Contains, "startswith": bytes.HasPrefix, "endswith": bytes.HasSuffix,
	}[cs.name]
	return newFuncExpr(planpb.DataType_BOOLEAN, args, func(_ *funcExpr, v []Value) Value {
		return Bool(test(v[0].B, v[1].B))
	}), nil
}

// compileLike is like(str, pattern[, escape]): SQL's LIKE, matching the
// whole string, where _ is any character and % any sequence; the escape
// character (default \) makes the next _, % or itself literal and may
// precede nothing else.
func compileLike(cs *callSite) (Expr, error) {
	if err := cs.arity(2, 3); err != nil {
		return nil, err
	}
	x, err := cs.str(0)
	if err != nil {
		return nil, err
	}
	pattern, null, err := cs.literalString(1, "pattern")
	if err != nil || null {
		return nullOf(planpb.DataType_BOOLEAN), err
	}
	escape := '\\'
	if len(cs.args) == 3 {
		e, null, err := cs.literalString(2, "escape")
		if err != nil || null {
			return nullOf(planpb.DataType_BOOLEAN), err
		}
		if utf8.RuneCountInString(e) != 1 {
			return nil, fmt.Errorf("%w: like's escape %q must be one character", ErrType, e)
		}
		escape, _ = utf8.DecodeRuneInString(e)
	}
	m, err := compileLikePattern(pattern, escape)
	if err != nil {
		return nil, fmt.Errorf("%w: like: pattern %q: %w", ErrType, pattern, err)
	}
	return newFuncExpr(planpb.DataType_BOOLEAN, []Expr{x}, func(_ *funcExpr, v []Value) Value {
		return Bool(m.match(text(v[0])))
	}), nil
}

// likeMatcher matches a LIKE pattern: with a regular expression when it
// has a _, else by its literal parts between the %s (segs), found in order.
type likeMatcher struct {
	re   *regexp.Regexp
	segs [][]byte
}

func (m *likeMatcher) match(s []byte) bool {
	if m.re != nil {
		return m.re.Match(s)
	}
	first, last := m.segs[0], m.segs[len(m.segs)-1]
	if len(m.segs) == 1 {
		return bytes.Equal(s, first)
	}
	if len(s) < len(first)+len(last) || !bytes.HasPrefix(s, first) || !bytes.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, seg := range m.segs[1 : len(m.segs)-1] {
		i := bytes.Index(s, seg)
		if i < 0 {
			return false
		}
		s = s[i+len(seg):]
	}
	return true
}

// compileLikePattern translates a LIKE pattern into its matcher.
func compileLikePattern(pattern string, escape rune) (*likeMatcher, error) {
	var out strings.Builder
	segs := [][]byte{nil}
	underscore := false
	rs := []rune(pattern)
	for i := 0; i < len(rs); i++ {
		lit := rs[i]
		switch c := rs[i]; {
		case c == escape && i+1 < len(rs):
			i++
			if lit = rs[i]; lit != '_' && lit != '%' && lit != escape {
				return nil, fmt.Errorf("the escape character is not allowed to precede %q", lit)
			}
		case c == escape:
			return nil, fmt.Errorf("it is not allowed to end with the escape character")
		case c == '_':
			out.WriteString(".")
			underscore = true
			continue
		case c == '%':
			out.WriteString(".*")
			segs = append(segs, nil)
			continue
		}
		segs[len(segs)-1] = utf8.AppendRune(segs[len(segs)-1], lit)
		out.WriteString(regexp.QuoteMeta(string(lit)))
	}
	if !underscore {
		return &likeMatcher{segs: segs}, nil
	}
	re, err := regexp.Compile(`\A(?s:` + out.String() + `)\z`)
	return &likeMatcher{re: re}, err
}

// regexCall checks a call (str, pattern, ...) of lo to hi arguments whose
// pattern is a string literal, and compiles the pattern; re is nil when the
// pattern is a null literal, which makes the call null.
func (cs *callSite) regexCall(lo, hi int) (x Expr, re *regexp.Regexp, pattern string, err error) {
	if err := cs.arity(lo, hi); err != nil {
		return nil, nil, "", err
	}
	if x, err = cs.str(0); err != nil {
		return nil, nil, "", err
	}
	pattern, null, err := cs.literalString(1, "pattern")
	if err != nil || null {
		return nil, nil, "", err
	}
	re, err = compileJavaRegex(cs.name, pattern)
	return x, re, pattern, err
}

// compileRlike is rlike(str, regexp): whether the Java regex matches
// somewhere in str.
func compileRlike(cs *callSite) (Expr, error) {
	x, re, _, err := cs.regexCall(2, 2)
	if err != nil || re == nil {
		return nullOf(planpb.DataType_BOOLEAN), err
	}
	return newFuncExpr(planpb.DataType_BOOLEAN, []Expr{x}, func(_ *funcExpr, v []Value) Value {
		return Bool(re.Match(text(v[0])))
	}), nil
}

// compileRegexpExtract is regexp_extract(str, regexp[, idx]): group idx
// (default 1; 0 is the whole match) of the first match, "" when nothing
// matches or the group did not take part.
func compileRegexpExtract(cs *callSite) (Expr, error) {
	x, re, pattern, err := cs.regexCall(2, 3)
	if err != nil || re == nil {
		return nullOf(planpb.DataType_STRING), err
	}
	idx := int64(1)
	if len(cs.args) == 3 {
		v, ok := cs.literal(2)
		switch {
		case ok && v.Kind == KindNull:
			return nullOf(planpb.DataType_STRING), nil
		case !ok || v.Kind != KindLong:
			return nil, fmt.Errorf("%w: regexp_extract's group index (argument 3) must be an integer literal", ErrType)
		}
		idx = v.I
	}
	if idx < 0 || idx > int64(re.NumSubexp()) {
		return nil, fmt.Errorf("%w: regexp_extract: pattern %q has %d groups, so the group index %d is out of range (0 is the whole match)", ErrType, pattern, re.NumSubexp(), idx)
	}
	return newFuncExpr(planpb.DataType_STRING, []Expr{x}, func(_ *funcExpr, v []Value) Value {
		s := text(v[0])
		m := re.FindSubmatchIndex(s)
		if m == nil || m[2*idx] < 0 {
			return String(s[:0])
		}
		return String(s[m[2*idx]:m[2*idx+1]])
	}), nil
}

// compileRegexpReplace is regexp_replace(str, regexp, rep): every match
// replaced by rep, in which $n and ${name} stand for groups and \ makes the
// next character literal (Java's Matcher.replaceAll).
func compileRegexpReplace(cs *callSite) (Expr, error) {
	x, re, _, err := cs.regexCall(3, 3)
	if err != nil || re == nil {
		return nullOf(planpb.DataType_STRING), err
	}
	rep, null, err := cs.literalString(2, "replacement")
	if err != nil || null {
		return nullOf(planpb.DataType_STRING), err
	}
	parts, err := parseReplacement(rep, re)
	if err != nil {
		return nil, fmt.Errorf("%w: regexp_replace: replacement %q: %w", ErrType, rep, err)
	}
	return newFuncExpr(planpb.DataType_STRING, []Expr{x}, func(f *funcExpr, v []Value) Value {
		s := text(v[0])
		last := 0
		f.buf = f.buf[:0]
		for _, m := range re.FindAllSubmatchIndex(s, -1) {
			f.buf = append(f.buf, s[last:m[0]]...)
			for _, p := range parts {
				if p.group < 0 {
					f.buf = append(f.buf, p.lit...)
				} else if m[2*p.group] >= 0 {
					f.buf = append(f.buf, s[m[2*p.group]:m[2*p.group+1]]...)
				}
			}
			last = m[1]
		}
		return String(append(f.buf, s[last:]...))
	}), nil
}

// replacementPart is a literal (group < 0) or a group reference.
type replacementPart struct {
	lit   string
	group int
}

// parseReplacement parses a Java replacement string: $n takes as many
// digits as still name a group of re, ${name} a named group, \c is c.
func parseReplacement(rep string, re *regexp.Regexp) ([]replacementPart, error) {
	var parts []replacementPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, replacementPart{lit: lit.String(), group: -1})
			lit.Reset()
		}
	}
	for i := 0; i < len(rep); i++ {
		switch c := rep[i]; c {
		case '\\':
			if i+1 == len(rep) {
				return nil, fmt.Errorf("character to be escaped is missing")
			}
			i++
			lit.WriteByte(rep[i])
		case '$':
			if i+1 == len(rep) {
				return nil, fmt.Errorf("illegal group reference: group index is missing")
			}
			i++
			var g int
			switch {
			case rep[i] == '{':
				end := strings.IndexByte(rep[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("named capturing group is missing trailing '}'")
				}
				name := rep[i+1 : i+end]
				if g = re.SubexpIndex(name); g < 0 {
					return nil, fmt.Errorf("no group with name {%s}", name)
				}
				i += end
			case rep[i] >= '0' && rep[i] <= '9':
				g = int(rep[i] - '0')
				for i+1 < len(rep) && rep[i+1] >= '0' && rep[i+1] <= '9' {
					next := g*10 + int(rep[i+1]-'0')
					if next > re.NumSubexp() {
						break
					}
					g = next
					i++
				}
				if g > re.NumSubexp() {
					return nil, fmt.Errorf("no group %d (the pattern has %d)", g, re.NumSubexp())
				}
			default:
				return nil, fmt.Errorf("illegal group reference after $")
			}
			flush()
			parts = append(parts, replacementPart{group: g})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return parts, nil
}

// compileElementAt is element_at(array, index), 1-based with negative
// indexes counting from the end, and get_item(array, index), 0-based (the
// array[index] of SQL and Column.GetItem): null out of range. On a struct,
// get_item with a string literal is get_field.
func compileElementAt(cs *callSite) (Expr, error) {
	if err := cs.arity(2, 2); err != nil {
		return nil, err
	}
	arr := cs.args[0]
	elem := planpb.DataType_STRING
	switch arr.Type() {
	case planpb.DataType_ARRAY_STRING:
	case planpb.DataType_HEADERS:
		elem = planpb.DataType_HEADERS // a struct(key, value), as explode's elements
	default:
		return nil, fmt.Errorf("%w: %s needs an array, got %s", ErrType, cs.name, TypeName(arr.Type()))
	}
	idx, err := cs.integer(1)
	if err != nil {
		return nil, err
	}
	oneBased := cs.name == "element_at"
	if v, ok := cs.literal(1); ok && oneBased && v.Kind == KindLong && v.I == 0 {
		return nil, fmt.Errorf("%w: element_at: SQL array indexes start at 1, the index 0 is invalid (use 1 for the first element, -1 for the last)", ErrType)
	}
	return newFuncExpr(elem, []Expr{arr, idx}, func(_ *funcExpr, v []Value) Value {
		a, i := v[0].A, v[1].I
		switch {
		case !oneBased:
		case i > 0:
			i--
		case i < 0:
			i += int64(len(a))
		default:
			return Null
		}
		if i < 0 || i >= int64(len(a)) {
			return Null
		}
		return a[i]
	}), nil
}
