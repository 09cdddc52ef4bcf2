package engine

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// options are Spark-style string options of a source, a sink or a query.
// Names match case-insensitively, as in Spark: "checkpointlocation" is
// "checkpointLocation". Setting a name again replaces its value.
type options map[string]option // by lower-case name

type option struct {
	name  string // as the caller spelled it, for messages
	value string
}

func (o options) set(name, value string) { o[strings.ToLower(name)] = option{name, value} }

// get returns the value of the option name (any case).
func (o options) get(name string) (string, bool) {
	v, ok := o[strings.ToLower(name)]
	return v.value, ok
}

// check refuses an option that is none of known, the names of what (such
// as "the console sink") spelled as documented, with an error listing them.
// An option whose name starts with one of the prefixes (ending in '.',
// such as "kafka.") is left to the caller.
func (o options) check(what string, known []string, prefixes ...string) error {
	names := make([]string, 0, len(o))
	for k := range o {
		names = append(names, k)
	}
	sort.Strings(names) // the first unknown one, whatever the map's order
	for _, k := range names {
		ok := false
		for _, n := range known {
			ok = ok || strings.EqualFold(k, n)
		}
		for _, p := range prefixes {
			ok = ok || strings.HasPrefix(k, strings.ToLower(p))
		}
		if !ok {
			list := slices.Clone(known)
			for _, p := range prefixes {
				list = append(list, p+"*")
			}
			return fmt.Errorf("%w: unknown option %q for %s: the known ones are %s (names match in any case)",
				ErrAnalysis, o[k].name, what, strings.Join(list, ", "))
		}
	}
	return nil
}
