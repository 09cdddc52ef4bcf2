package operators

import (
	"bytes"
	"regexp"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// Splitter splits strings like Spark's split(str, regex, limit): a Java regex
// split where limit <= 0 keeps every piece, trailing empty strings included,
// and limit > 0 yields at most limit pieces, the last holding the rest. A
// positive-width match at the start yields a leading empty string; an empty
// input yields one empty string. Patterns without regex metacharacters take a
// byte-search fast path; others are compiled with Go's RE2 syntax, which
// matches Java's for common patterns (\s+, \W+, [,;]).
type Splitter struct {
	lit   []byte
	re    *regexp.Regexp
	class *byteClass // re is a run of a class of characters, like \W+ or \s+
	empty bool
	limit int
	buf   []byte
}

// byteClass marks the bytes that a one-character class matches, for a
// class that either holds every non-ASCII character or none: on valid UTF-8
// each byte then tells alone whether it belongs to a separator.
type byteClass [256]bool

// runClass returns the byte class of re when re matches one or more
// characters of a class and nothing else (\W+, \s+, [,; ]+, [^a-z0-9]+).
func runClass(re *syntax.Regexp) *byteClass {
	re = re.Simplify()
	if re.Op != syntax.OpPlus || re.Flags&syntax.NonGreedy != 0 || len(re.Sub) != 1 {
		return nil
	}
	var r []rune // sorted, non-overlapping lo-hi pairs
	switch sub := re.Sub[0]; sub.Op {
	case syntax.OpCharClass:
		r = sub.Rune
	case syntax.OpLiteral:
		if len(sub.Rune) != 1 || sub.Flags&syntax.FoldCase != 0 {
			return nil
		}
		r = []rune{sub.Rune[0], sub.Rune[0]}
	default:
		return nil
	}
	c := new(byteClass)
	nonASCII := false
	for i := 0; i < len(r); i += 2 {
		lo, hi := r[i], r[i+1]
		switch {
		case hi < utf8.RuneSelf:
			for b := lo; b <= hi; b++ {
				c[b] = true
			}
		case lo == utf8.RuneSelf && hi == unicode.MaxRune:
			nonASCII = true
		case lo < utf8.RuneSelf && hi == unicode.MaxRune:
			for b := lo; b < utf8.RuneSelf; b++ {
				c[b] = true
			}
			nonASCII = true
		default:
			return nil // some non-ASCII characters but not all
		}
	}
	for b := utf8.RuneSelf; b < len(c); b++ {
		c[b] = nonASCII
	}
	return c
}

// NewSplitter compiles pattern. limit follows Spark (0 behaves like -1).
func NewSplitter(pattern string, limit int) (*Splitter, error) {
	if limit == 0 {
		limit = -1
	}
	s := &Splitter{limit: limit}
	switch {
	case pattern == "":
		s.empty = true
	case regexp.QuoteMeta(pattern) == pattern:
		s.lit = []byte(pattern)
	default:
		re, err := compileJavaRegex("split", pattern)
		if err != nil {
			return nil, err
		}
		s.re = re
		if parsed, err := syntax.Parse(re.String(), syntax.Perl); err == nil {
			s.class = runClass(parsed)
		}
	}
	return s, nil
}

// byteSep reports the separator when s splits on a one-byte literal
// without a limit, the case a caller may run itself on valid UTF-8.
func (s *Splitter) byteSep() (byte, bool) {
	if len(s.lit) == 1 && s.limit < 0 {
		return s.lit[0], true
	}
	return 0, false
}

// Each calls fn for every piece of str, in order. Pieces reference str (or,
// for invalid UTF-8, a buffer reused by the next call), so fn must copy a
// piece it keeps.
func (s *Splitter) Each(str []byte, fn func(piece []byte)) {
	if !utf8.Valid(str) {
		// Spark decodes to a Java string first: malformed bytes become U+FFFD.
		s.buf = AppendValidUTF8(s.buf[:0], str)
		str = s.buf
	}
	switch {
	case s.lit != nil:
		s.eachLiteral(str, fn)
	case s.empty:
		s.eachRune(str, fn)
	case s.class != nil:
		s.eachRun(str, fn)
	default:
		s.eachRegexp(str, fn)
	}
}

func (s *Splitter) eachLiteral(str []byte, fn func([]byte)) {
	n := 1
	for s.limit < 0 || n < s.limit {
		i := bytes.Index(str, s.lit)
		if i < 0 {
			break
		}
		fn(str[:i])
		str = str[i+len(s.lit):]
		n++
	}
	fn(str)
}

func (s *Splitter) eachRune(str []byte, fn func([]byte)) {
	n := 1
	for len(str) > 0 && (s.limit < 0 || n < s.limit) {
		_, size := utf8.DecodeRune(str)
		if size == len(str) {
			break
		}
		fn(str[:size])
		str = str[size:]
		n++
	}
	fn(str)
}

// eachRun splits on the runs of s.class as eachRegexp would, a byte at a
// time: the first match may start at 0 (a leading empty string) and every
// match is a maximal run, since a run of the class never borders another.
func (s *Splitter) eachRun(str []byte, fn func([]byte)) {
	c := s.class
	start, n := 0, 1
	for i := 0; i < len(str) && (s.limit < 0 || n < s.limit); {
		if !c[str[i]] {
			i++
			continue
		}
		fn(str[start:i])
		for i++; i < len(str) && c[str[i]]; i++ {
		}
		start = i
		n++
	}
	fn(str[start:])
}

func (s *Splitter) eachRegexp(str []byte, fn func([]byte)) {
	max := -1
	if s.limit > 0 {
		max = s.limit
	}
	start, n := 0, 1
	for _, m := range s.re.FindAllIndex(str, max) {
		if s.limit > 0 && n >= s.limit {
			break
		}
		if m[1] == 0 {
			continue // a zero-width match at the beginning never yields a leading empty string
		}
		fn(str[start:m[0]])
		start = m[1]
		n++
	}
	fn(str[start:])
}
