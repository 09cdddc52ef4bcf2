package sqlexpr

import (
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

type tokenKind uint8

const (
	tEOF    tokenKind = iota
	tIdent            // a name or keyword; text is as written
	tQuoted           // a backticked name; text is the name
	tString           // a string literal; text is its value
	tNumber           // a number literal; text is as written
	tOp               // an operator or punctuation; text is the operator
)

type token struct {
	kind tokenKind
	text string
	pos  int // byte offset in the input
	end  int
}

// is reports whether t is the keyword kw (upper case), matched
// case-insensitively. Backticked names are never keywords.
func (t token) is(kw string) bool { return t.kind == tIdent && strings.EqualFold(t.text, kw) }

func (t token) isOp(op string) bool { return t.kind == tOp && t.text == op }

// operators, longest first so that "<=>" wins over "<=" and "<".
var operators = []string{
	"<=>", "==", "!=", "<>", "<=", ">=", "||", "->", "::",
	"+", "-", "*", "/", "%", "=", "<", ">", "(", ")", ",", ".", "[", "]", "!", "&", "|", "^", "~", ":", ";", "{", "}", "?",
}

// lex splits s into tokens; the last one is tEOF.
func lex(s string) ([]token, error) {
	var out []token
	i := 0
	for {
		for i < len(s) {
			r, n := utf8.DecodeRuneInString(s[i:])
			if !unicode.IsSpace(r) {
				break
			}
			i += n
		}
		if i < len(s)-1 && s[i] == '-' && s[i+1] == '-' { // a comment to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		}
		if i < len(s)-1 && s[i] == '/' && s[i+1] == '*' {
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return nil, errAt(i, "/*", "unterminated comment")
			}
			i += end + 4
			continue
		}
		if i == len(s) {
			return append(out, token{kind: tEOF, pos: i, end: i}), nil
		}
		t, err := lexOne(s, i)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		i = t.end
	}
}

func lexOne(s string, i int) (token, error) {
	c := s[i]
	switch {
	case (c == 'r' || c == 'R') && i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '"'):
		end := strings.IndexByte(s[i+2:], s[i+1])
		if end < 0 {
			return token{}, errAt(i, s[i:i+2], "unterminated string")
		}
		return token{kind: tString, text: s[i+2 : i+2+end], pos: i, end: i + 3 + end}, nil
	case c == '\'' || c == '"':
		return lexString(s, i)
	case c == '`':
		var b strings.Builder
		for j := i + 1; j < len(s); j++ {
			if s[j] != '`' {
				b.WriteByte(s[j])
				continue
			}
			if j+1 < len(s) && s[j+1] == '`' { // `` inside a quoted name is one `
				b.WriteByte('`')
				j++
				continue
			}
			return token{kind: tQuoted, text: b.String(), pos: i, end: j + 1}, nil
		}
		return token{}, errAt(i, "`", "unterminated quoted name")
	case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j < len(s) && s[j] == '.' {
			j++
			for j < len(s) && isDigit(s[j]) {
				j++
			}
		}
		if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
			k := j + 1
			if k < len(s) && (s[k] == '+' || s[k] == '-') {
				k++
			}
			if k < len(s) && isDigit(s[k]) {
				for j = k; j < len(s) && isDigit(s[j]); j++ {
				}
			}
		}
		for j < len(s) && isIdentByte(s[j]) { // a suffix: L, D, BD, ... (checked by the parser)
			j++
		}
		return token{kind: tNumber, text: s[i:j], pos: i, end: j}, nil
	case isIdentStart(s, i):
		j := i
		for j < len(s) {
			r, n := utf8.DecodeRuneInString(s[j:])
			if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				break
			}
			j += n
		}
		return token{kind: tIdent, text: s[i:j], pos: i, end: j}, nil
	}
	for _, op := range operators {
		if strings.HasPrefix(s[i:], op) {
			return token{kind: tOp, text: op, pos: i, end: i + len(op)}, nil
		}
	}
	_, n := utf8.DecodeRuneInString(s[i:])
	return token{}, errAt(i, s[i:i+n], "unexpected character")
}

func isDigit(c byte) bool     { return c >= '0' && c <= '9' }
func isIdentByte(c byte) bool { return c == '_' || isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' }

func isIdentStart(s string, i int) bool {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return r == '_' || unicode.IsLetter(r)
}

// lexString reads a quoted string at s[i] and unescapes it as Spark does
// (ParserUtils.unescapeSQLString): \0 \b \n \r \t \Z, \uXXXX, three octal
// digits \000 to \177... (the first digit 0 or 1), \% and \_ kept with their
// backslash (for LIKE), and \ before any other character dropped.
func lexString(s string, i int) (token, error) {
	quote := s[i]
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == quote:
			return token{kind: tString, text: b.String(), pos: i, end: j + 1}, nil
		case c != '\\':
			b.WriteByte(c)
			continue
		case j+1 == len(s):
			return token{}, errAt(i, s[i:i+1], "unterminated string")
		}
		j++
		switch e := s[j]; e {
		case '0', '1':
			if j+2 < len(s) && isOctal(s[j+1]) && isOctal(s[j+2]) {
				b.WriteRune(rune(e-'0')<<6 | rune(s[j+1]-'0')<<3 | rune(s[j+2]-'0'))
				j += 2
			} else if e == '0' {
				b.WriteByte(0)
			} else {
				b.WriteByte(e)
			}
		case 'b':
			b.WriteByte('\b')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'Z':
			b.WriteByte(0x1A)
		case '%', '_':
			b.WriteByte('\\')
			b.WriteByte(e)
		case 'u':
			if r, ok := hex4(s[j+1:]); ok {
				j += 4
				if utf16.IsSurrogate(r) && strings.HasPrefix(s[j+1:], `\u`) { // a UTF-16 pair, as Java reads it
					if r2, ok := hex4(s[j+3:]); ok && utf16.DecodeRune(r, r2) != utf8.RuneError {
						r = utf16.DecodeRune(r, r2)
						j += 6
					}
				}
				b.WriteRune(r)
			} else {
				b.WriteByte('u')
			}
		default:
			_, n := utf8.DecodeRuneInString(s[j:])
			b.WriteString(s[j : j+n])
			j += n - 1
		}
	}
	return token{}, errAt(i, s[i:i+1], "unterminated string")
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func hex4(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[:4]) {
		switch {
		case isDigit(c):
			r = r<<4 | rune(c-'0')
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			r = r<<4 | rune(c|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
