package operators

import (
	"fmt"
	"regexp"
	"strings"
)

// compileJavaRegex compiles a Java regular expression, as Spark's regex
// functions take, with Go's RE2 engine. The syntax both share compiles as
// is; Java spellings RE2 lacks are translated: (?<name>...) named groups,
// \uXXXX, \e, \h, \v, Java's \s (which includes \x0B) and the POSIX classes
// \p{Alpha}, \p{Digit} and the like. What RE2 cannot match at all is
// refused with an error naming the construct: backreferences, lookaround,
// atomic groups, possessive quantifiers, class intersections and nested
// classes, and flags other than i, m and s.
func compileJavaRegex(fn, pattern string) (*regexp.Regexp, error) {
	translated, err := translateJavaRegex(pattern)
	if err == nil {
		var re *regexp.Regexp
		if re, err = regexp.Compile(translated); err == nil {
			return re, nil
		}
	}
	return nil, fmt.Errorf("%w: %s: pattern %q: %w", ErrType, fn, pattern, err)
}

// refuse is the error for a construct RE2 cannot match.
func refuse(construct string) error {
	return fmt.Errorf("%s is not supported (gostream matches with Go's RE2 engine, which has no backtracking): rewrite the pattern without it", construct)
}

// javaPOSIX maps Java's \p{...} POSIX classes to RE2 class items.
var javaPOSIX = map[string]string{
	"Lower": "a-z", "Upper": "A-Z", "ASCII": `\x00-\x7F`, "Alpha": "a-zA-Z", "Digit": "0-9",
	"Alnum": "a-zA-Z0-9", "Punct": `!-/:-@\[-` + "`" + `{-~`, "Graph": `!-~`, "Print": ` -~`,
	"Blank": ` \t`, "Cntrl": `\x00-\x1F\x7F`, "XDigit": "0-9a-fA-F", "Space": ` \t\n\x0B\f\r`,
}

const (
	javaSpace   = ` \t\n\x0B\f\r`
	javaHSpace  = ` \t\xA0\x{1680}\x{180e}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}`
	javaVSpace  = `\n\x0B\f\r\x{85}\x{2028}\x{2029}`
	javaLineEnd = `(?:\r\n|[` + javaVSpace + `])`
)

// repetition is a {n}, {n,} or {n,m} quantifier.
var repetition = regexp.MustCompile(`^\{\d+(,\d*)?\}`)

func translateJavaRegex(p string) (string, error) {
	var out strings.Builder
	inClass := 0        // > 0 inside [...]: the position after its '['
	quantified := false // the last token was a quantifier
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			if i+1 >= len(p) {
				return "", fmt.Errorf("it ends with an unescaped backslash")
			}
			i++
			e := p[i]
			switch {
			case e == 'Q': // \Q...\E quotes, as in RE2
				end := strings.Index(p[i+1:], `\E`)
				lit := p[i+1:]
				if end >= 0 {
					lit = p[i+1 : i+1+end]
					i += end + 2
				} else {
					i = len(p)
				}
				if inClass > 0 {
					for _, r := range lit {
						out.WriteString(regexp.QuoteMeta(string(r)))
					}
				} else {
					out.WriteString(regexp.QuoteMeta(lit))
				}
			case e >= '1' && e <= '9' && inClass == 0:
				return "", refuse(`the backreference \` + string(e))
			case e == 'k' && inClass == 0:
				return "", refuse(`the named backreference \k<...>`)
			case e == 'G' || e == 'Z':
				return "", refuse(`the anchor \` + string(e))
			case e == 'u':
				if i+4 >= len(p) {
					return "", fmt.Errorf(`\u needs four hex digits`)
				}
				fmt.Fprintf(&out, `\x{%s}`, p[i+1:i+5])
				i += 4
			case e == 'e':
				out.WriteString(`\x1B`)
			case e == 's' || e == 'S' || e == 'h' || e == 'H' || e == 'v' || e == 'V':
				set := map[byte]string{'s': javaSpace, 'h': javaHSpace, 'v': javaVSpace}[e|0x20]
				switch {
				case inClass > 0 && e >= 'a':
					out.WriteString(set)
				case inClass > 0:
					return "", refuse(`a negated class \` + string(e) + ` inside [...]`)
				case e >= 'a':
					out.WriteString("[" + set + "]")
				default:
					out.WriteString("[^" + set + "]")
				}
			case e == 'R' && inClass == 0:
				out.WriteString(javaLineEnd)
			case e == 'p' || e == 'P':
				name, n := classProperty(p[i+1:])
				if set, ok := javaPOSIX[name]; ok {
					switch {
					case inClass > 0 && e == 'p':
						out.WriteString(set)
					case inClass > 0:
						return "", refuse(`a negated class \P{` + name + `} inside [...]`)
					case e == 'p':
						out.WriteString("[" + set + "]")
					default:
						out.WriteString("[^" + set + "]")
					}
				} else {
					out.WriteString(`\` + string(e) + p[i+1:i+1+n]) // Unicode classes: RE2 has them
				}
				i += n
			default:
				out.WriteByte('\\')
				out.WriteByte(e)
			}
		case inClass > 0:
			switch {
			case c == '[' && strings.HasPrefix(p[i:], "[:"):
				out.WriteString(`\[`) // Java reads [: as two literals, RE2 as a POSIX class
			case c == '[':
				return "", refuse("a nested character class [...[...]]")
			case c == '&' && strings.HasPrefix(p[i:], "&&"):
				return "", refuse("character class intersection &&")
			case c == ']' && i > inClass && !(i == inClass+1 && p[inClass] == '^'):
				inClass = 0
				out.WriteByte(c)
			default:
				out.WriteByte(c)
			}
		case c == '[':
			inClass = i + 1
			out.WriteByte(c)
		case c == '(' && strings.HasPrefix(p[i:], "(?"):
			n, err := translateGroup(p[i:], &out)
			if err != nil {
				return "", err
			}
			i += n - 1
		case c == '*' || c == '+' || c == '?':
			if quantified && c == '+' {
				return "", refuse("the possessive quantifier " + p[i-1:i+1])
			}
			out.WriteByte(c)
			quantified = !quantified || c != '?' // a ? after a quantifier makes it lazy
			continue
		case c == '{' && repetition.MatchString(p[i:]):
			n := len(repetition.FindString(p[i:]))
			out.WriteString(p[i : i+n])
			i += n - 1
			quantified = true
			continue
		default:
			out.WriteByte(c)
		}
		quantified = false
	}
	if inClass > 0 {
		return "", fmt.Errorf("unclosed character class")
	}
	return out.String(), nil
}

// classProperty returns the name of a \p property at the start of s ("L" or
// "{Alpha}") and its length in s.
func classProperty(s string) (string, int) {
	if strings.HasPrefix(s, "{") {
		if end := strings.IndexByte(s, '}'); end > 0 {
			return strings.TrimPrefix(s[1:end], "Is"), end + 1
		}
	}
	if s == "" {
		return "", 0
	}
	return s[:1], 1
}

// translateGroup translates the group opening "(?..." at the start of s,
// writing the RE2 form to out, and returns how much of s it consumed.
func translateGroup(s string, out *strings.Builder) (int, error) {
	switch {
	case strings.HasPrefix(s, "(?="), strings.HasPrefix(s, "(?!"):
		return 0, refuse("lookahead " + s[:3] + "...)")
	case strings.HasPrefix(s, "(?<="), strings.HasPrefix(s, "(?<!"):
		return 0, refuse("lookbehind " + s[:4] + "...)")
	case strings.HasPrefix(s, "(?>"):
		return 0, refuse("the atomic group (?>...)")
	case strings.HasPrefix(s, "(?<"):
		out.WriteString("(?P<")
		return 3, nil
	case strings.HasPrefix(s, "(?:"):
		out.WriteString("(?:")
		return 3, nil
	}
	end := strings.IndexAny(s, ":)")
	if end < 0 {
		return 0, fmt.Errorf("unclosed group %q", s)
	}
	for _, f := range s[2:end] {
		if !strings.ContainsRune("ims-", f) {
			return 0, refuse(fmt.Sprintf("the flag %q in %s", f, s[:end+1]))
		}
	}
	out.WriteString(s[:end+1])
	return end + 1, nil
}
