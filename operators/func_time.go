package operators

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	_ "time/tzdata" // zone names in timestamps and patterns resolve on machines without a zoneinfo database

	"github.com/gostream/gostream/proto/planpb"
)

// BatchClock holds the timestamp of the batch being run, which
// current_timestamp returns: one value for the whole batch, as in Spark,
// whichever task evaluates it. Set it before the batch's tasks start; tasks
// read it concurrently. Until it is first set, current_timestamp reads the
// wall clock.
type BatchClock struct{ micros atomic.Int64 }

// Set makes t the batch timestamp.
func (c *BatchClock) Set(t time.Time) { c.micros.Store(t.UnixMicro()) }

func (c *BatchClock) now() int64 {
	if c != nil {
		if m := c.micros.Load(); m != 0 {
			return m
		}
	}
	return time.Now().UnixMicro()
}

// exprEnv is what expressions read besides their rows: the batch clock
// (current_timestamp) and the session time zone, in which timestamps
// without a zone are read and timestamps are formatted.
type exprEnv struct {
	clock *BatchClock
	zone  *time.Location
}

func (e *exprEnv) batchClock() *BatchClock {
	if e == nil {
		return nil
	}
	return e.clock
}

// timeZone is the session time zone: UTC unless set by with_time_zone
// (Spark's default is the JVM's zone; gostream's, like a Spark with
// spark.sql.session.timeZone=UTC, is UTC).
func (e *exprEnv) timeZone() *time.Location {
	if e == nil || e.zone == nil {
		return time.UTC
	}
	return e.zone
}

// WithTimeZone is the function that sets the session time zone of the
// expression it wraps: with_time_zone(zone name literal, expr). The engine
// wraps a query's expressions in it when its session has a time zone, so
// that the zone travels with the plan.
const WithTimeZone = "with_time_zone"

// TimeZone returns the zone a session time zone name names: a region
// (Europe/Paris), UTC or GMT, Z, or an offset (+01:00).
func TimeZone(name string) (*time.Location, bool) {
	if name == "" {
		return nil, false
	}
	return parseZone(name)
}

func compileWithTimeZone(c *planpb.Call, in Schema, env *exprEnv) (Expr, error) {
	args := c.GetArgs()
	if len(args) != 2 || args[0].GetLiteral() == nil {
		return nil, fmt.Errorf("%w: %s takes a zone name literal and an expression", ErrType, WithTimeZone)
	}
	name := args[0].GetLiteral().GetString_()
	zone, ok := TimeZone(name)
	if !ok {
		return nil, fmt.Errorf("%w: unknown time zone %q (use a region such as Europe/Paris, UTC, or an offset such as +01:00)", ErrType, name)
	}
	return compileExpr(args[1], in, &exprEnv{clock: env.batchClock(), zone: zone})
}

// timeFuncs are Spark's timestamp functions.
var timeFuncs = map[string]compileFunc{
	"current_timestamp": compileCurrentTimestamp,
	"now":               compileCurrentTimestamp,
	"to_timestamp":      compileToTimestamp,
	"date_format":       compileDateFormat,
}

type currentTimestamp struct{ clock *BatchClock }

func (c currentTimestamp) Type() planpb.DataType { return planpb.DataType_TIMESTAMP }

func (c currentTimestamp) Eval(Row) Value { return Value{Kind: KindTimestamp, I: c.clock.now()} }

func compileCurrentTimestamp(cs *callSite) (Expr, error) {
	if err := cs.arity(0, 0); err != nil {
		return nil, err
	}
	clock := cs.env.batchClock()
	if clock == nil {
		return &literalExpr{Value{Kind: KindTimestamp, I: time.Now().UnixMicro()}, planpb.DataType_TIMESTAMP}, nil
	}
	return currentTimestamp{clock}, nil
}

// compileToTimestamp is to_timestamp(str[, format]): str parsed with the
// Spark datetime pattern format, or without one as CAST(str AS TIMESTAMP)
// does; null when it does not parse. A timestamp is returned as is.
func compileToTimestamp(cs *callSite) (Expr, error) {
	if err := cs.arity(1, 2); err != nil {
		return nil, err
	}
	if cs.args[0].Type() == planpb.DataType_TIMESTAMP && len(cs.args) == 1 {
		return cs.args[0], nil
	}
	x, err := cs.str(0)
	if err != nil {
		return nil, err
	}
	if len(cs.args) == 1 {
		return cs.cast(x, planpb.DataType_TIMESTAMP)
	}
	pattern, null, err := cs.literalString(1, "format")
	if err != nil || null {
		return nullOf(planpb.DataType_TIMESTAMP), err
	}
	f, err := compileDatetimePattern(pattern)
	if err != nil {
		return nil, fmt.Errorf("%w: to_timestamp: %w", ErrType, err)
	}
	zone := cs.env.timeZone()
	return newFuncExpr(planpb.DataType_TIMESTAMP, []Expr{x}, func(_ *funcExpr, v []Value) Value {
		t, ok := f.parse(string(v[0].B), zone)
		if !ok {
			return Null
		}
		return Timestamp(t)
	}), nil
}

// compileDateFormat is date_format(ts, format): the timestamp (or a string
// cast to one) formatted in the session time zone with the Spark datetime
// pattern format.
func compileDateFormat(cs *callSite) (Expr, error) {
	if err := cs.arity(2, 2); err != nil {
		return nil, err
	}
	x := cs.args[0]
	switch x.Type() {
	case planpb.DataType_TIMESTAMP:
	case planpb.DataType_STRING:
		var err error
		if x, err = cs.cast(x, planpb.DataType_TIMESTAMP); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: date_format needs a timestamp, got %s", ErrType, TypeName(x.Type()))
	}
	pattern, null, err := cs.literalString(1, "format")
	if err != nil || null {
		return nullOf(planpb.DataType_STRING), err
	}
	f, err := compileDatetimePattern(pattern)
	if err != nil {
		return nil, fmt.Errorf("%w: date_format: %w", ErrType, err)
	}
	zone := cs.env.timeZone()
	return newFuncExpr(planpb.DataType_STRING, []Expr{x}, func(e *funcExpr, v []Value) Value {
		e.buf = f.format(e.buf[:0], time.UnixMicro(v[0].I).In(zone))
		return String(e.buf)
	}), nil
}

// castTimestampPattern is what CAST(str AS TIMESTAMP) accepts, as Spark's
// stringToTimestamp: a year, then optionally -month, -day, a T or space and
// hour[:minute[:second[.fraction]]], and a zone (Z, +hh[:mm], UTC, a region
// such as Europe/Paris); surrounding spaces are ignored.
var castTimestampPattern = regexp.MustCompile(`^\s*([+-]?\d{4,6})(?:-(\d{1,2})(?:-(\d{1,2})(?:(?:[T ](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:\.(\d{0,9})\d*)?)?)?)?\s*([zZ]|[+-]\d{1,2}(?::?\d{2}){0,2}|\s?[A-Za-z][A-Za-z0-9_/+:-]*)?)?)?)?\s*$`)

// parseCastTimestamp parses s as CAST(s AS TIMESTAMP) does; a zone-less
// value is read in zone.
func parseCastTimestamp(s string, zone *time.Location) (time.Time, bool) {
	m := castTimestampPattern.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, false
	}
	num := func(i, def int) int {
		if m[i] == "" {
			return def
		}
		n, _ := strconv.Atoi(m[i])
		return n
	}
	nanos := 0
	if m[7] != "" {
		nanos, _ = strconv.Atoi((m[7] + "000000000")[:9])
	}
	if m[8] != "" {
		z, ok := parseZone(strings.TrimSpace(m[8]))
		if !ok {
			return time.Time{}, false
		}
		zone = z
	}
	return validDate(num(1, 0), num(2, 1), num(3, 1), num(4, 0), num(5, 0), num(6, 0), nanos, zone)
}

// validDate is time.Date when every field is in range (time.Date would
// normalize February 30 into March).
func validDate(y, mo, d, h, mi, s, ns int, zone *time.Location) (time.Time, bool) {
	t := time.Date(y, time.Month(mo), d, h, mi, s, ns, zone)
	if mo < 1 || mo > 12 || t.Day() != d || h > 23 || mi > 59 || s > 59 {
		return time.Time{}, false
	}
	return t, true
}

// parseZone reads a zone: Z, an offset (+8, +08:00, +0800), or a zone name
// (UTC, GMT+1, Europe/Paris).
func parseZone(z string) (*time.Location, bool) {
	switch {
	case z == "Z" || z == "z":
		return time.UTC, true
	case z[0] == '+' || z[0] == '-':
		digits := strings.ReplaceAll(z[1:], ":", "")
		if len(digits) == 1 || len(digits) == 3 {
			digits = "0" + digits
		}
		digits += "0000"
		h, _ := strconv.Atoi(digits[:2])
		m, _ := strconv.Atoi(digits[2:4])
		if h > 18 || m > 59 {
			return nil, false
		}
		off := h*3600 + m*60
		if z[0] == '-' {
			off = -off
		}
		return time.FixedZone(z, off), true
	case strings.HasPrefix(z, "UTC") || strings.HasPrefix(z, "GMT"):
		if len(z) == 3 {
			return time.UTC, true
		}
		return parseZone(z[3:])
	}
	loc, err := time.LoadLocation(z)
	return loc, err == nil
}

// datetimeField is one element of a Spark datetime pattern: a letter
// repeated count times, or literal text (letter 0).
type datetimeField struct {
	letter rune
	count  int
	text   string
}

// datetimePattern is a compiled Spark datetime pattern (Spark 3's
// DateTimeFormatter-based patterns).
type datetimePattern struct{ fields []datetimeField }

// datetimeLetters are the supported pattern letters.
const datetimeLetters = "yMLdDHhkKmsSaEzZXxVO"

func compileDatetimePattern(p string) (*datetimePattern, error) {
	var f datetimePattern
	rs := []rune(p)
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case c == '\'':
			end := i + 1
			var text strings.Builder
			for ; end < len(rs); end++ {
				if rs[end] == '\'' {
					if end+1 < len(rs) && rs[end+1] == '\'' {
						text.WriteRune('\'')
						end++
						continue
					}
					break
				}
				text.WriteRune(rs[end])
			}
			if end >= len(rs) {
				return nil, fmt.Errorf("pattern %q: unclosed quote", p)
			}
			if end == i+1 {
				text.WriteRune('\'') // '' is a quote
			}
			f.fields = append(f.fields, datetimeField{text: text.String()})
			i = end + 1
		case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			n := 1
			for i+n < len(rs) && rs[i+n] == c {
				n++
			}
			if !strings.ContainsRune(datetimeLetters, c) {
				hint := ""
				if strings.ContainsRune("YwWuec", c) {
					hint = " (week-based fields are unsupported, as in Spark 3)"
				}
				return nil, fmt.Errorf("pattern %q: the pattern letter %q is not supported%s; supported letters: %s, and 'quoted text'", p, c, hint, datetimeLetters)
			}
			if err := checkCount(c, n); err != nil {
				return nil, fmt.Errorf("pattern %q: %w", p, err)
			}
			f.fields = append(f.fields, datetimeField{letter: c, count: n})
			i += n
		case c == '[' || c == ']' || c == '{' || c == '}' || c == '#':
			return nil, fmt.Errorf("pattern %q: %q is reserved (optional sections are not supported)", p, c)
		default:
			f.fields = append(f.fields, datetimeField{text: string(c)})
			i++
		}
	}
	return &f, nil
}

// checkCount refuses letter counts Spark refuses.
func checkCount(c rune, n int) error {
	limit := map[rune]int{'M': 5, 'L': 5, 'd': 2, 'D': 3, 'H': 2, 'h': 2, 'k': 2, 'K': 2, 'm': 2, 's': 2, 'S': 9, 'a': 1, 'E': 4, 'z': 4, 'Z': 5, 'X': 5, 'x': 5, 'O': 4, 'V': 2, 'y': 9}[c]
	if n > limit || (c == 'V' && n != 2) || (c == 'O' && n != 1 && n != 4) {
		return fmt.Errorf("too many pattern letters: %s", strings.Repeat(string(c), n))
	}
	return nil
}

var (
	shortMonths = []string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	shortDays   = []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
)

// format appends t formatted by f.
func (f *datetimePattern) format(dst []byte, t time.Time) []byte {
	for _, x := range f.fields {
		n := x.count
		switch x.letter {
		case 0:
			dst = append(dst, x.text...)
		case 'y':
			y := t.Year()
			if n == 2 {
				dst = appendPadded(dst, y%100, 2)
			} else {
				dst = appendPadded(dst, y, n)
			}
		case 'M', 'L':
			switch {
			case n == 3:
				dst = append(dst, shortMonths[t.Month()-1]...)
			case n == 4:
				dst = append(dst, t.Month().String()...)
			case n == 5:
				dst = append(dst, t.Month().String()[0])
			default:
				dst = appendPadded(dst, int(t.Month()), n)
			}
		case 'd':
			dst = appendPadded(dst, t.Day(), n)
		case 'D':
			dst = appendPadded(dst, t.YearDay(), n)
		case 'H':
			dst = appendPadded(dst, t.Hour(), n)
		case 'k':
			dst = appendPadded(dst, (t.Hour()+23)%24+1, n)
		case 'h':
			dst = appendPadded(dst, (t.Hour()+11)%12+1, n)
		case 'K':
			dst = appendPadded(dst, t.Hour()%12, n)
		case 'm':
			dst = appendPadded(dst, t.Minute(), n)
		case 's':
			dst = appendPadded(dst, t.Second(), n)
		case 'S':
			frac := fmt.Sprintf("%09d", t.Nanosecond())
			dst = append(dst, frac[:n]...)
		case 'a':
			if t.Hour() < 12 {
				dst = append(dst, "AM"...)
			} else {
				dst = append(dst, "PM"...)
			}
		case 'E':
			if n == 4 {
				dst = append(dst, t.Weekday().String()...)
			} else {
				dst = append(dst, shortDays[t.Weekday()]...)
			}
		case 'z':
			name, _ := t.Zone()
			dst = append(dst, name...)
		case 'V':
			dst = append(dst, t.Location().String()...)
		case 'Z', 'X', 'x', 'O':
			dst = appendOffset(dst, x, t)
		}
	}
	return dst
}

func appendPadded(dst []byte, v, width int) []byte {
	if v < 0 {
		dst, v = append(dst, '-'), -v
	}
	s := strconv.Itoa(v)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// appendOffset appends t's zone offset as the pattern letters Z, X, x and O
// spell it (DateTimeFormatter's rules).
func appendOffset(dst []byte, x datetimeField, t time.Time) []byte {
	_, off := t.Zone()
	if off == 0 && x.letter == 'X' {
		return append(dst, 'Z')
	}
	if x.letter == 'O' || (x.letter == 'Z' && x.count == 4) {
		dst = append(dst, "GMT"...)
		if off == 0 {
			return dst
		}
	}
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	h, m := off/3600, off/60%60
	dst = append(dst, sign)
	switch {
	case x.letter == 'O' && x.count == 1:
		dst = strconv.AppendInt(dst, int64(h), 10)
		if m != 0 {
			dst = appendPadded(append(dst, ':'), m, 2)
		}
		return dst
	case x.letter == 'O', x.letter == 'Z' && x.count >= 4:
		return appendPadded(append(appendPadded(dst, h, 2), ':'), m, 2)
	case x.letter == 'Z':
		return appendPadded(appendPadded(dst, h, 2), m, 2)
	}
	dst = appendPadded(dst, h, 2) // X and x: 1 +HH[mm], 2 +HHmm, 3 +HH:mm
	switch {
	case x.count == 1 && m != 0, x.count == 2 || x.count == 4:
		dst = appendPadded(dst, m, 2)
	case x.count == 3 || x.count == 5:
		dst = appendPadded(append(dst, ':'), m, 2)
	}
	return dst
}

// parse reads s with f; fields without a zone are read in zone. Every
// character of s must be used.
func (f *datetimePattern) parse(s string, zone *time.Location) (time.Time, bool) {
	y, mo, d, h, mi, sec, ns := 1970, 1, 1, 0, 0, 0, 0
	yday, pm, hour12 := -1, -1, false
	for i, x := range f.fields {
		if x.letter == 0 {
			if !strings.HasPrefix(s, x.text) {
				return time.Time{}, false
			}
			s = s[len(x.text):]
			continue
		}
		// A field followed by another number field without a separator
		// takes exactly its count of digits (yyyyMMdd).
		adjacent := i+1 < len(f.fields) && f.fields[i+1].letter != 0 && strings.ContainsRune("yMLdDHhkKmsS", f.fields[i+1].letter)
		var v int
		var ok bool
		switch x.letter {
		case 'y':
			lo, hi := x.count, 9
			if x.count == 2 {
				hi = 2
			} else if adjacent {
				hi = max(x.count, 4)
			}
			if v, s, ok = parseDigits(s, lo, hi); !ok {
				return time.Time{}, false
			}
			if x.count == 2 {
				v += 2000
			}
			y = v
		case 'M', 'L':
			if x.count >= 3 {
				if mo, s, ok = parseMonthName(s, x.count); !ok {
					return time.Time{}, false
				}
				continue
			}
			if mo, s, ok = parseField(s, x.count, 2, adjacent); !ok {
				return time.Time{}, false
			}
		case 'd':
			d, s, ok = parseField(s, x.count, 2, adjacent)
		case 'D':
			yday, s, ok = parseField(s, x.count, 3, adjacent)
		case 'H', 'k':
			h, s, ok = parseField(s, x.count, 2, adjacent)
			if x.letter == 'k' && h == 24 {
				h = 0
			}
		case 'h', 'K':
			h, s, ok = parseField(s, x.count, 2, adjacent)
			hour12 = true
			if x.letter == 'h' && h == 12 {
				h = 0
			}
		case 'm':
			mi, s, ok = parseField(s, x.count, 2, adjacent)
		case 's':
			sec, s, ok = parseField(s, x.count, 2, adjacent)
		case 'S':
			var digits string
			n := 0
			for n < len(s) && n < x.count && s[n] >= '0' && s[n] <= '9' {
				n++
			}
			if n == 0 {
				return time.Time{}, false
			}
			digits, s = s[:n], s[n:]
			ns, _ = strconv.Atoi((digits + "000000000")[:9])
			ok = true
		case 'a':
			switch {
			case strings.HasPrefix(s, "AM"), strings.HasPrefix(s, "am"):
				pm = 0
			case strings.HasPrefix(s, "PM"), strings.HasPrefix(s, "pm"):
				pm = 1
			default:
				return time.Time{}, false
			}
			s, ok = s[2:], true
		case 'E':
			ok = false
			for _, day := range shortDays {
				if x.count == 4 {
					day = map[string]string{"Sun": "Sunday", "Mon": "Monday", "Tue": "Tuesday", "Wed": "Wednesday", "Thu": "Thursday", "Fri": "Friday", "Sat": "Saturday"}[day]
				}
				if strings.HasPrefix(s, day) {
					s, ok = s[len(day):], true
					break
				}
			}
		case 'z', 'V', 'Z', 'X', 'x', 'O':
			end := strings.IndexAny(s, " \t")
			if end < 0 {
				end = len(s)
			}
			zone, ok = parseZone(s[:end])
			s = s[end:]
		}
		if !ok {
			return time.Time{}, false
		}
	}
	if s != "" {
		return time.Time{}, false
	}
	if hour12 {
		if h > 11 {
			return time.Time{}, false
		}
		if pm == 1 {
			h += 12
		}
	}
	if yday > 0 {
		t := time.Date(y, 1, yday, h, mi, sec, ns, zone)
		if t.Year() != y {
			return time.Time{}, false
		}
		return t, true
	}
	return validDate(y, mo, d, h, mi, sec, ns, zone)
}

// parseField reads a number field of count letters: count digits, or 1 to
// max digits for a single letter not adjacent to another number.
func parseField(s string, count, max int, adjacent bool) (int, string, bool) {
	if count == 1 && !adjacent {
		return parseDigits(s, 1, max)
	}
	return parseDigits(s, count, count)
}

// parseDigits reads lo to hi digits.
func parseDigits(s string, lo, hi int) (int, string, bool) {
	n := 0
	for n < len(s) && n < hi && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	if n < lo {
		return 0, s, false
	}
	v, err := strconv.Atoi(s[:n])
	return v, s[n:], err == nil
}

func parseMonthName(s string, count int) (int, string, bool) {
	for i, short := range shortMonths {
		name := short
		if count == 4 {
			name = time.Month(i + 1).String()
		}
		if strings.HasPrefix(s, name) {
			return i + 1, s[len(name):], true
		}
	}
	return 0, s, false
}

// floorDiv is a / b rounded toward negative infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
