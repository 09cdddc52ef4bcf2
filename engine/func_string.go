package engine

import (
	"fmt"
	"strings"
)

// names joins the columns' names for a derived column name.
func names(cols []Column) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.name
	}
	return strings.Join(out, ", ")
}

// column returns other as a Column: a Column as is, anything else as Lit.
func column(other any) Column {
	if o, ok := other.(Column); ok {
		return o
	}
	return Lit(other)
}

// LTrim removes leading spaces.
func LTrim(c Column) Column { return call("ltrim", "ltrim("+c.name+")", c) }

// RTrim removes trailing spaces.
func RTrim(c Column) Column { return call("rtrim", "rtrim("+c.name+")", c) }

// Substring is Spark's substring(str, pos, len): len characters from the
// 1-based position pos; a negative pos counts from the end.
func Substring(c Column, pos, length int) Column {
	return call("substring", fmt.Sprintf("substring(%s, %d, %d)", c.name, pos, length), c, Lit(pos), Lit(length))
}

// SubstringIndex is Spark's substring_index(str, delim, count): str before
// the count-th delim, or after the count-th from the end for a negative
// count.
func SubstringIndex(c Column, delim string, count int) Column {
	return call("substring_index", fmt.Sprintf("substring_index(%s, %s, %d)", c.name, delim, count), c, Lit(delim), Lit(count))
}

// RegexpExtract is Spark's regexp_extract(str, pattern, idx): group idx (0:
// the whole match) of the first match of the Java regex pattern, "" if none.
// Go's RE2 runs it: backreferences and lookaround are refused when the query
// is analysed.
func RegexpExtract(c Column, pattern string, idx int) Column {
	return call("regexp_extract", fmt.Sprintf("regexp_extract(%s, %s, %d)", c.name, pattern, idx), c, Lit(pattern), Lit(idx))
}

// RegexpReplace is Spark's regexp_replace(str, pattern, replacement): every
// match of the Java regex replaced; $1 or ${name} in replacement stands for
// a group.
func RegexpReplace(c Column, pattern, replacement string) Column {
	return call("regexp_replace", fmt.Sprintf("regexp_replace(%s, %s, %s, 1)", c.name, pattern, replacement), c, Lit(pattern), Lit(replacement))
}

// Concat joins the columns' strings; null if any is null.
func Concat(cols ...Column) Column { return call("concat", "concat("+names(cols)+")", cols...) }

// ConcatWs joins the non-null strings (and elements of string arrays) with
// sep, skipping nulls.
func ConcatWs(sep string, cols ...Column) Column {
	return call("concat_ws", "concat_ws("+sep+", "+names(cols)+")", append([]Column{Lit(sep)}, cols...)...)
}

// ElementAt is Spark's element_at(array, index): 1-based, a negative index
// counts from the end, null out of range (0 is an analysis error).
func ElementAt(c Column, index int) Column {
	return call("element_at", fmt.Sprintf("element_at(%s, %d)", c.name, index), c, Lit(index))
}

// GetItem is Spark's Column.getItem on an array: the 0-based element, null
// out of range, as split(value, " ")[0] in SQL.
func (c Column) GetItem(index int) Column {
	return call("get_item", fmt.Sprintf("%s[%d]", c.name, index), c, Lit(index))
}

// Like is SQL's LIKE: _ matches one character, % any run, \ escapes them;
// the whole string must match.
func (c Column) Like(pattern string) Column {
	return call("like", c.name+" LIKE "+pattern, c, Lit(pattern))
}

// RLike reports whether the Java regex pattern matches somewhere in the
// string.
func (c Column) RLike(pattern string) Column {
	return call("rlike", "RLIKE("+c.name+", "+pattern+")", c, Lit(pattern))
}

// Contains reports whether other (a Column or a string) occurs in the string.
func (c Column) Contains(other any) Column {
	o := column(other)
	return call("contains", "contains("+c.name+", "+o.name+")", c, o)
}

// StartsWith reports whether the string starts with other (a Column or a
// string).
func (c Column) StartsWith(other any) Column {
	o := column(other)
	return call("startswith", "startswith("+c.name+", "+o.name+")", c, o)
}

// EndsWith reports whether the string ends with other (a Column or a string).
func (c Column) EndsWith(other any) Column {
	o := column(other)
	return call("endswith", "endswith("+c.name+", "+o.name+")", c, o)
}
