package sqlexpr

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// show prints a tree fully parenthesized, as SQL that parses back to the
// same tree.
func show(n Node) string {
	switch x := n.(type) {
	case *Column:
		parts := make([]string, len(x.Parts))
		for i, p := range x.Parts {
			parts[i] = "`" + strings.ReplaceAll(p, "`", "``") + "`"
		}
		return strings.Join(parts, ".")
	case *Star:
		return "*"
	case *Literal:
		switch v := x.Value.(type) {
		case nil:
			return "NULL"
		case string:
			var b strings.Builder
			b.WriteByte('\'')
			for _, r := range v {
				if r > 0xFFFF {
					b.WriteRune(r)
					continue
				}
				fmt.Fprintf(&b, `\u%04X`, r) // every character escaped: no escape rule is left out
			}
			return b.String() + "'"
		case float64:
			return "(" + strconv.FormatFloat(v, 'g', -1, 64) + "D)"
		case int64:
			return "(" + strconv.FormatInt(v, 10) + "L)"
		}
		return fmt.Sprint(x.Value)
	case *Unary:
		return "(" + x.Op + " " + show(x.X) + ")"
	case *Binary:
		return "(" + show(x.L) + " " + x.Op + " " + show(x.R) + ")"
	case *IsNull:
		return "(" + show(x.X) + " IS " + not(x.Not) + "NULL)"
	case *In:
		return "(" + show(x.X) + " " + not(x.Not) + "IN (" + list(x.List) + "))"
	case *Like:
		op := "LIKE"
		if x.Regex {
			op = "RLIKE"
		}
		s := "(" + show(x.X) + " " + not(x.Not) + op + " " + show(x.Pattern)
		if x.Escape != "" {
			s += " ESCAPE " + show(&Literal{Value: x.Escape})
		}
		return s + ")"
	case *Between:
		return "(" + show(x.X) + " " + not(x.Not) + "BETWEEN " + show(x.Lo) + " AND " + show(x.Hi) + ")"
	case *Case:
		s := "CASE "
		if x.Operand != nil {
			s += show(x.Operand) + " "
		}
		for i := range x.Whens {
			s += "WHEN " + show(x.Whens[i]) + " THEN " + show(x.Then[i]) + " "
		}
		if x.Else != nil {
			s += "ELSE " + show(x.Else) + " "
		}
		return s + "END"
	case *Cast:
		for name, t := range types {
			if t == x.To {
				return "CAST(" + show(x.X) + " AS " + name + ")"
			}
		}
	case *Call:
		return "`" + strings.ReplaceAll(x.Name, "`", "``") + "`(" + list(x.Args) + ")"
	case *Index:
		return show(x.X) + "[" + show(x.I) + "]"
	case *Field:
		return "(" + show(x.X) + ").`" + strings.ReplaceAll(x.Name, "`", "``") + "`"
	}
	panic(fmt.Sprintf("show: %T", n))
}

func not(b bool) string {
	if b {
		return "NOT "
	}
	return ""
}

func list(ns []Node) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = show(n)
	}
	return strings.Join(s, ", ")
}

func showNamed(n Named) string {
	if n.Alias == "" {
		return show(n.X)
	}
	return show(n.X) + " AS `" + strings.ReplaceAll(n.Alias, "`", "``") + "`"
}

func TestParse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"CAST(value AS STRING)", "CAST(`value` AS STRING)"},
		{"a + b * c - d", "((`a` + (`b` * `c`)) - `d`)"},
		{"a = 1 AND b <> 2 OR NOT c", "(((`a` = (1L)) AND (`b` != (2L))) OR (NOT `c`))"},
		{"NOT a = b", "(NOT (`a` = `b`))"},
		{"a == b", "(`a` = `b`)"},
		{"a <=> NULL", "(`a` <=> NULL)"},
		{"x IS NOT NULL AND y IS NULL", "((`x` IS NOT NULL) AND (`y` IS NULL))"},
		{"x NOT IN (1, 'a', NULL)", "(`x` NOT IN ((1L), '\\u0061', NULL))"},
		{"x LIKE 'a%' ESCAPE '!'", "(`x` LIKE '\\u0061\\u0025' ESCAPE '\\u0021')"},
		{"x NOT RLIKE '^a'", "(`x` NOT RLIKE '\\u005E\\u0061')"},
		{"x REGEXP 'a'", "(`x` RLIKE '\\u0061')"},
		{"x BETWEEN 1 AND 2 AND y", "((`x` BETWEEN (1L) AND (2L)) AND `y`)"},
		{"CASE WHEN a THEN 1 ELSE 2 END", "CASE WHEN `a` THEN (1L) ELSE (2L) END"},
		{"case a when 1 then 'x' end", "CASE `a` WHEN (1L) THEN '\\u0078' END"},
		{"`a b`.c AS `x``y`", "`a b`.`c` AS `x``y`"},
		{"upper(trim(s)) u", "`upper`(`trim`(`s`)) AS `u`"},
		{"count(*)", "`count`(*)"},
		{"now()", "`now`()"},
		{"split(v, ' ')[0]", "`split`(`v`, '\\u0020')[(0L)]"},
		{"-1.5e1", "(-15D)"},
		{"- a", "(- `a`)"},
		{"1 - -2", "((1L) - (-2L))"},
		{"a || 'b'", "(`a` || '\\u0062')"},
		{"*", "*"},
		{"from_json(v, 'a INT').a.`b c`", "((`from_json`(`v`, '\\u0061\\u0020\\u0049\\u004E\\u0054')).`a`).`b c`"},
		{"j.level", "`j`.`level`"},
		{"TIMESTAMP '2024-01-02 03:04:05' < ts", "(CAST('\\u0032\\u0030\\u0032\\u0034\\u002D\\u0030\\u0031\\u002D\\u0030\\u0032\\u0020\\u0030\\u0033\\u003A\\u0030\\u0034\\u003A\\u0030\\u0035' AS TIMESTAMP) < `ts`)"},
		{"current_timestamp", "`current_timestamp`()"},
		{"10L + 2D + 1.5BD", "(((10L) + (2D)) + (1.5D))"},
		{"99999999999999999999", "(1e+20D)"},
		{`'\uD83D\uDE00'`, "'\U0001F600'"},
		{`'a\'b' "c\"d"`, "'\\u0061\\u0027\\u0062\\u0063\\u0022\\u0064'"},
	} {
		n, err := Parse(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := showNamed(n); got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

// FuzzParse checks that Parse never panics, that its errors point inside the
// input, and that what it parses prints (fully parenthesized) as SQL that
// parses back to the same tree.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"CAST(value AS STRING)", "a + b * c", "x NOT IN (1, 2)", "CASE WHEN a THEN 'x' ELSE NULL END",
		"`a``b`.c AS d", "'\\u0041\\101\\n' 'x'", "r'\\d+'", "f(a, b)[1] alias", "NOT a <=> b OR c IS NULL",
		"x LIKE '%!_%' ESCAPE '!'", "1e10 + .5 - 7L", "count(*) OVER ()", "-- c\n1 /* x */",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || e.Pos < 0 || e.Pos > len(s) {
				t.Fatalf("%q: error %#v", s, err)
			}
			return
		}
		printed := showNamed(n)
		again, err := Parse(printed)
		if e, ok := err.(*Error); ok && e.Msg == "expression nested too deeply" {
			return // the printed form nests deeper than s: its parentheses count
		}
		if err != nil {
			t.Fatalf("%q parsed to %s, which does not parse: %v", s, printed, err)
		}
		if got := showNamed(again); got != printed {
			t.Fatalf("%q parsed to %s, which parses to %s", s, printed, got)
		}
	})
}
