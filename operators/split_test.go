package operators

import (
	"reflect"
	"testing"
)

func pieces(t *testing.T, pattern string, limit int, in string) []string {
	t.Helper()
	sp, err := NewSplitter(pattern, limit)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	sp.Each([]byte(in), func(p []byte) { out = append(out, string(p)) })
	return out
}

// TestSplitLikeSpark checks split(value, pattern) against what Spark 3.5
// (Java's String.split with limit -1) returns.
func TestSplitLikeSpark(t *testing.T) {
	cases := []struct {
		name, pattern, in string
		limit             int
		want              []string
	}{
		{"words", " ", "a b c", -1, []string{"a", "b", "c"}},
		{"consecutive", " ", "a  b", -1, []string{"a", "", "b"}},
		{"leading", " ", " a", -1, []string{"", "a"}},
		{"trailing", " ", "a ", -1, []string{"a", ""}},
		{"only spaces", " ", "   ", -1, []string{"", "", "", ""}},
		{"empty value", " ", "", -1, []string{""}},
		{"tabs are not spaces", " ", "a\tb c", -1, []string{"a\tb", "c"}},
		{"korean", " ", "한국어 로그  분석", -1, []string{"한국어", "로그", "", "분석"}},
		{"emoji", " ", "🚀 launch 🚀", -1, []string{"🚀", "launch", "🚀"}},
		{"invalid utf-8 becomes U+FFFD per malformed sequence", " ", "bad\xe2\x82 \xff\xfe ok\xc3", -1, []string{"bad\uFFFD", "\uFFFD\uFFFD", "ok\uFFFD"}},
		{"limit 0 is -1", " ", "a b ", 0, []string{"a", "b", ""}},
		{"positive limit keeps the rest", " ", "a b c d", 2, []string{"a", "b c d"}},
		{"multi-char literal", ", ", "a, b,c", -1, []string{"a", "b,c"}},
		{"regex", `\s+`, "a \t b", -1, []string{"a", "b"}},
		{"regex leading match", `\s+`, "  a", -1, []string{"", "a"}},
		{"regex class", "[,;]", "a,b;;c", -1, []string{"a", "b", "", "c"}},
		{"regex no match", `\d`, "abc", -1, []string{"abc"}},
		{"regex limit", `\s`, "a b c", 2, []string{"a", "b c"}},
		{"word runs", `\W+`, "GET /a_b?x=1 HTTP/1.1", -1, []string{"GET", "a_b", "x", "1", "HTTP", "1", "1"}},
		{"word runs at both ends", `\W+`, "[a] b.", -1, []string{"", "a", "b", ""}},
		{"word runs split non-ASCII", `\W+`, "café€x 한", -1, []string{"caf", "x", ""}},
		{"word runs with limit", `\W+`, "a, b, c", 2, []string{"a", "b, c"}},
		{"space runs keep non-ASCII", `\s+`, "한 \t국", -1, []string{"한", "국"}},
		{"negated class", `[^a-z]+`, "ab12cd€e", -1, []string{"ab", "cd", "e"}},
		{"one-character run", `,+`, "a,,b,", -1, []string{"a", "b", ""}},
		{"empty pattern splits characters", "", "ab한", -1, []string{"a", "b", "한"}},
		{"empty pattern on empty string", "", "", -1, []string{""}},
		{"empty pattern with limit", "", "abc", 2, []string{"a", "bc"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := pieces(t, c.pattern, c.limit, c.in); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("split(%q, %q, %d) = %q, want %q", c.in, c.pattern, c.limit, got, c.want)
			}
		})
	}
}

func TestSplitBadRegex(t *testing.T) {
	if _, err := NewSplitter("(", -1); err == nil {
		t.Fatal("no error for an invalid pattern")
	}
}

func TestToValidUTF8(t *testing.T) {
	cases := map[string]string{
		"plain":              "plain",
		"\xe2\x82\xac":       "€",
		"\xe2\x82":           "\uFFFD",
		"\xe2\x82A":          "\uFFFDA",
		"\xf0\x9f\x9a":       "\uFFFD",
		"\xed\xa0\x80":       "\uFFFD", // a surrogate: one malformed sequence for Java
		"\xed\xa0A":          "\uFFFDA",
		"\xc0\xaf":           "\uFFFD\uFFFD",
		"a\xffb":             "a\uFFFDb",
		"\xf4\x90\x80\x80x":  "\uFFFD\uFFFD\uFFFD\uFFFDx",
		"ok\xf0\x9f\x9a\x80": "ok🚀",
	}
	for in, want := range cases {
		if got := string(ToValidUTF8([]byte(in))); got != want {
			t.Errorf("ToValidUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSplitter(f *testing.F) {
	f.Add([]byte("a  b "), " ")
	f.Add([]byte("\xff x"), `\s+`)
	f.Fuzz(func(t *testing.T, in []byte, pattern string) {
		sp, err := NewSplitter(pattern, -1)
		if err != nil {
			return
		}
		n := 0
		sp.Each(in, func([]byte) { n++ })
		if n == 0 {
			t.Fatal("split yielded nothing; Spark always yields at least one piece")
		}
	})
}

// TestRunClass checks which patterns split a byte at a time: runs of a
// class that holds all non-ASCII characters or none.
func TestRunClass(t *testing.T) {
	for pattern, want := range map[string]bool{
		`\W+`: true, `\s+`: true, `[,; ]+`: true, `[^a-z0-9]+`: true, `(?i)[a-c]+`: true, `x+`: true,
		`\W`: false, `\W+?`: false, `\W*`: false, `[é ]+`: false, `[^é]+`: false, `\pL+`: false, `a b`: false, `(?i)k+`: false,
	} {
		sp, err := NewSplitter(pattern, -1)
		if err != nil {
			t.Fatal(err)
		}
		if got := sp.class != nil; got != want {
			t.Errorf("%q splits a byte at a time: %v, want %v", pattern, got, want)
		}
	}
}

// FuzzSplitterRuns checks the byte-at-a-time split of character-class runs
// against the regular expression it stands for.
func FuzzSplitterRuns(f *testing.F) {
	f.Add([]byte("GET /a?b=1 HTTP/1.1"), 0, -1)
	f.Add([]byte("\xff\xfe x é,,"), 3, 2)
	patterns := []string{`\W+`, `\s+`, `[,; ]+`, `[^a-z]+`, `(?i)[a-c]+`, `[\x00-\x{10FFFF}]+`}
	f.Fuzz(func(t *testing.T, in []byte, which, limit int) {
		pattern := patterns[uint(which)%uint(len(patterns))]
		fast, err := NewSplitter(pattern, limit)
		if err != nil || fast.class == nil {
			t.Fatalf("%q: no byte class (%v)", pattern, err)
		}
		slow := *fast
		slow.class = nil
		var got, want []string
		fast.Each(in, func(p []byte) { got = append(got, string(p)) })
		slow.Each(in, func(p []byte) { want = append(want, string(p)) })
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("split(%q, %q, %d) = %q, want %q (regexp)", in, pattern, limit, got, want)
		}
	})
}

func BenchmarkSplitExplode(b *testing.B) {
	line := []byte(`198.51.100.7 - - [24/Nov/2026:09:00:25 +0000] "GET /index.html HTTP/1.1" 200 6191`)
	sp, _ := NewSplitter(" ", -1)
	n := 0
	count := func([]byte) { n++ }
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		sp.Each(line, count)
	}
}
