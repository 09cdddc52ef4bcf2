package operators

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonScanner reads one JSON value from b as Jackson does for Spark: single
// quoted strings are allowed, and unescaped control characters in strings
// when controls is set. A syntax error sets failed; every method then
// returns at once.
type jsonScanner struct {
	b        []byte
	pos      int
	failed   bool
	controls bool
	depth    int // objects and arrays open at the cursor
	// arena holds unescaped strings; it only grows during one document, so
	// strings returned before stay valid.
	arena []byte
}

func (s *jsonScanner) reset(b []byte) {
	s.b, s.pos, s.failed, s.depth, s.arena = b, 0, false, 0, s.arena[:0]
}

// maxJSONDepth is how deep objects and arrays may nest: Jackson's limit
// (StreamReadConstraints, Spark 3.5's Jackson 2.15), beyond which a
// document is malformed. It also bounds the recursion of the readers.
const maxJSONDepth = 1000

// enter opens an object or array, failing the scan past maxJSONDepth.
func (s *jsonScanner) enter(c byte) bool {
	s.expect(c)
	if s.depth++; s.depth > maxJSONDepth {
		s.fail()
	}
	return !s.failed
}

func (s *jsonScanner) fail() { s.failed = true }

func (s *jsonScanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the first byte of the next token (0 at the end).
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.failed || s.pos >= len(s.b) {
		return 0
	}
	return s.b[s.pos]
}

// expect consumes c, or fails.
func (s *jsonScanner) expect(c byte) {
	if s.peek() != c {
		s.fail()
		return
	}
	s.pos++
}

// object calls field for each member of the object at the cursor, with the
// cursor on the member's value, which field must consume; field returns
// false to stop early (failing the scan is the caller's business).
func (s *jsonScanner) object(field func(name []byte) bool) {
	if !s.enter('{') {
		return
	}
	defer func() { s.depth-- }()
	if s.peek() == '}' {
		s.pos++
		return
	}
	for !s.failed {
		if c := s.peek(); c != '"' && c != '\'' {
			s.fail()
			return
		}
		name := s.str()
		s.expect(':')
		if s.failed || !field(name) || s.failed {
			return
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return
		default:
			s.fail()
		}
	}
}

// array calls elem for each element of the array at the cursor, with the
// cursor on the element, which elem must consume.
func (s *jsonScanner) array(elem func() bool) {
	if !s.enter('[') {
		return
	}
	defer func() { s.depth-- }()
	if s.peek() == ']' {
		s.pos++
		return
	}
	for !s.failed {
		if !elem() || s.failed {
			return
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return
		default:
			s.fail()
		}
	}
}

// skip consumes the value at the cursor.
func (s *jsonScanner) skip() bool {
	switch s.peek() {
	case '{':
		s.object(func([]byte) bool { return s.skip() })
	case '[':
		s.array(s.skip)
	case '"', '\'':
		s.str()
	default:
		s.scalar()
	}
	return !s.failed
}

// scalar consumes a number, true, false or null and returns its text.
func (s *jsonScanner) scalar() []byte {
	start := s.pos
	switch c := s.peek(); {
	case c == 't':
		s.word("true")
	case c == 'f':
		s.word("false")
	case c == 'n':
		s.word("null")
	case c == '-' || (c >= '0' && c <= '9'):
		s.number()
	default:
		s.fail()
	}
	return s.b[start:s.pos]
}

func (s *jsonScanner) word(w string) {
	if len(s.b)-s.pos < len(w) || string(s.b[s.pos:s.pos+len(w)]) != w {
		s.fail()
		return
	}
	s.pos += len(w)
}

// number consumes a JSON number (no leading zeros, as Jackson's default).
func (s *jsonScanner) number() {
	b, i := s.b, s.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i, n = i+1, n+1
		}
		return n
	}
	first := i
	if n := digits(); n == 0 || (n > 1 && b[first] == '0') {
		s.fail()
		return
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			s.fail()
			return
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			s.fail()
			return
		}
	}
	s.pos = i
}

// str consumes a string and returns its unescaped bytes: the input's own
// when it has no escapes, else a copy in the arena.
func (s *jsonScanner) str() []byte {
	quote := s.peek()
	s.pos++
	start := s.pos
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == quote:
			s.pos = i + 1
			return s.b[start:i]
		case c == '\\':
			return s.strEscaped(quote, start)
		case c < 0x20 && !s.controls:
			s.fail()
			return nil
		}
	}
	s.fail()
	return nil
}

func (s *jsonScanner) strEscaped(quote byte, start int) []byte {
	from := len(s.arena)
	for i := start; i < len(s.b); i++ {
		c := s.b[i]
		switch {
		case c == quote:
			s.pos = i + 1
			return s.arena[from:len(s.arena):len(s.arena)]
		case c < 0x20 && !s.controls:
			s.fail()
			return nil
		case c != '\\':
			s.arena = append(s.arena, c)
			continue
		}
		i++
		if i >= len(s.b) {
			break
		}
		switch e := s.b[i]; e {
		case '"', '\\', '/', '\'':
			s.arena = append(s.arena, e)
		case 'b':
			s.arena = append(s.arena, '\b')
		case 'f':
			s.arena = append(s.arena, '\f')
		case 'n':
			s.arena = append(s.arena, '\n')
		case 'r':
			s.arena = append(s.arena, '\r')
		case 't':
			s.arena = append(s.arena, '\t')
		case 'u':
			r, ok := hex4(s.b[i+1:])
			if !ok {
				s.fail()
				return nil
			}
			i += 4 // the last hex digit
			if utf16.IsSurrogate(r) && i+2 < len(s.b) && s.b[i+1] == '\\' && s.b[i+2] == 'u' {
				if r2, ok := hex4(s.b[i+3:]); ok {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r, i = d, i+6
					}
				}
			}
			s.arena = utf8.AppendRune(s.arena, r)
		default:
			s.fail()
			return nil
		}
	}
	s.fail()
	return nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(n), err == nil
}

// jsonGen writes compact JSON as Jackson's generator does: a comma between
// the values of an array.
type jsonGen struct {
	out    []byte
	counts []int // values written in each open array
}

func (g *jsonGen) sep() {
	if n := len(g.counts); n > 0 {
		if g.counts[n-1] > 0 {
			g.out = append(g.out, ',')
		}
		g.counts[n-1]++
	}
}

func (g *jsonGen) startArray() {
	g.sep()
	g.out = append(g.out, '[')
	g.counts = append(g.counts, 0)
}

func (g *jsonGen) endArray() {
	g.out = append(g.out, ']')
	g.counts = g.counts[:len(g.counts)-1]
}

// rawValue writes JSON text as one value.
func (g *jsonGen) rawValue(b []byte) {
	g.sep()
	g.out = append(g.out, b...)
}

// copyValue writes the value at the scanner's cursor, consuming it.
func (g *jsonGen) copyValue(s *jsonScanner) {
	g.sep()
	g.out = appendJSONValue(g.out, s)
}

// appendJSONValue re-serializes the value at the cursor compactly, as
// Jackson's copyCurrentStructure: strings re-escaped, integers in canonical
// form, other numbers as Java doubles print.
func appendJSONValue(dst []byte, s *jsonScanner) []byte {
	switch s.peek() {
	case '{':
		dst = append(dst, '{')
		first := true
		s.object(func(name []byte) bool {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(appendJSONText(dst, name), ':')
			dst = appendJSONValue(dst, s)
			return true
		})
		return append(dst, '}')
	case '[':
		dst = append(dst, '[')
		first := true
		s.array(func() bool {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONValue(dst, s)
			return true
		})
		return append(dst, ']')
	case '"', '\'':
		return appendJSONText(dst, s.str())
	}
	return appendJSONNumber(dst, s.scalar())
}

// appendJSONNumber appends a scalar's text: true, false, null as they are,
// integers canonical (-0 is 0), other numbers as Java prints a double.
func appendJSONNumber(dst, text []byte) []byte {
	if len(text) == 0 || (text[0] != '-' && (text[0] < '0' || text[0] > '9')) {
		return append(dst, text...)
	}
	for _, c := range text {
		if c == '.' || c == 'e' || c == 'E' {
			f, _ := strconv.ParseFloat(string(text), 64)
			return appendDouble(dst, f)
		}
	}
	if i, err := strconv.ParseInt(string(text), 10, 64); err == nil {
		return strconv.AppendInt(dst, i, 10)
	}
	return append(dst, text...) // beyond int64: Jackson writes the BigInteger's digits
}

// appendJSONText appends s as a JSON string, escaped as Jackson escapes:
// quote, backslash and control characters (\b \t \n \f \r short, others
// \u00XX); invalid UTF-8 as U+FFFD.
func appendJSONText(dst, s []byte) []byte {
	dst = append(dst, '"')
	for _, c := range ToValidUTF8(s) {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c >= 0x20:
			dst = append(dst, c)
		case c == '\b':
			dst = append(dst, `\b`...)
		case c == '\t':
			dst = append(dst, `\t`...)
		case c == '\n':
			dst = append(dst, `\n`...)
		case c == '\f':
			dst = append(dst, `\f`...)
		case c == '\r':
			dst = append(dst, `\r`...)
		default:
			dst = append(dst, `\u00`...)
			dst = append(dst, "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		}
	}
	return append(dst, '"')
}
