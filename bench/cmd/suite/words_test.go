package main

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDemoWordsIsJavas checks demoWords against what OpenJDK 17 returns for
// Arrays.asList(v.toLowerCase(Locale.ROOT).split("\\W+")) (computed with
// jshell; the byte lines as new String(bytes, UTF_8) first).
func TestDemoWordsIsJavas(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"INFO request /api/v1/users took 12ms", []string{"info", "request", "api", "v1", "users", "took", "12ms"}},
		{"Hello, World! hello", []string{"hello", "world", "hello"}},
		{"[x] leading bracket", []string{"", "x", "leading", "bracket"}},
		{"  two leading spaces", []string{"", "two", "leading", "spaces"}},
		{"", []string{""}},
		{"!!!", nil},
		{"a..b", []string{"a", "b"}},
		{"snake_case and CamelCase_X9", []string{"snake_case", "and", "camelcase_x9"}},
		{"trailing punct...", []string{"trailing", "punct"}},
		{"A1_b2-C3", []string{"a1_b2", "c3"}},
		{"_", []string{"_"}},
		{"ERROR: [disk] 95%", []string{"error", "disk", "95"}},
		{"tab\there\nnewline", []string{"tab", "here", "newline"}},
		{"café naïve über", []string{"caf", "na", "ve", "ber"}},
		{"İstanbul \u212aelvin", []string{"i", "stanbul", "kelvin"}},
		{"ÀB\u0130\u0130Z", []string{"", "bi", "i", "z"}},
		// Invalid UTF-8: each malformed sequence decodes to U+FFFD, a
		// non-word character; Java never swallows the ASCII byte after one.
		{"\xe0A\xffb\xc3(c\xf0\x9fd\xc4\xb0x", []string{"", "a", "b", "c", "di", "x"}},
	} {
		if got := demoWords(tc.line); !slices.Equal(got, tc.want) {
			t.Errorf("demoWords(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

// TestDemoCountsAreTheLinesWords checks that the counts derived from the
// generator's token tally are those of splitting each line, and that no
// line yields an empty word, so WordCountDemo and gostream agree exactly.
func TestDemoCountsAreTheLinesWords(t *testing.T) {
	g := newGenerator(5)
	lines := make(map[string]int64)
	for range 20_000 {
		line := string(g.line())
		for _, w := range demoWords(line) {
			if w == "" {
				t.Fatalf("line %q yields an empty word", line)
			}
			lines[w]++
		}
	}
	want := demoCounts(g.expected())
	for w, n := range lines {
		if want.words[w] != n {
			t.Errorf("word %q: lines hold %d, demoCounts says %d", w, n, want.words[w])
		}
	}
	if len(want.words) != len(lines) {
		t.Errorf("demoCounts has %d words, the lines %d", len(want.words), len(lines))
	}
	if want.words["api"] == 0 || want.words["info"] == 0 || want.words["INFO"] != 0 {
		t.Errorf("api %d, info %d, INFO %d: want the words of /api/v1/... and the levels, lowercased",
			want.words["api"], want.words["info"], want.words["INFO"])
	}
}

func TestDecodeCount(t *testing.T) {
	word, n, err := decodeCount([]byte("héllo"), binary.BigEndian.AppendUint64(nil, 1<<40+7))
	if err != nil || word != "héllo" || n != 1<<40+7 {
		t.Errorf("decodeCount = %q, %d, %v; want héllo, %d", word, n, err, int64(1<<40+7))
	}
	if _, _, err := decodeCount([]byte("x"), []byte("12")); err == nil || !strings.Contains(err.Error(), "8-byte") {
		t.Errorf("a 2-byte count: got %v, want an error asking for 8 bytes", err)
	}
}

func TestKStreamsProps(t *testing.T) {
	dir := t.TempDir()
	j := job{brokers: "127.0.0.1:1,127.0.0.1:2", dir: dir}
	path := filepath.Join(dir, "streams.properties")
	if err := writeProperties(path, kstreamsProps(j, "bench-1", 2)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string)
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			got[k] = v
		}
	}
	for k, v := range map[string]string{
		"bootstrap.servers":          "127.0.0.1:1,127.0.0.1:2",
		"application.id":             "bench-1",
		"state.dir":                  filepath.Join(dir, "state"),
		"statestore.cache.max.bytes": "10485760",
		"commit.interval.ms":         "1000",
		"num.stream.threads":         "2",
		"replication.factor":         "2",
	} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != 7 {
		t.Errorf("%d properties, want 7:\n%s", len(got), b)
	}
}

func TestLatestCounts(t *testing.T) {
	l := newLatestCounts(&wordCounts{words: map[string]int64{"a": 2, "b": 1}})
	steps := []struct {
		word  string
		n     int64
		final bool
	}{
		{"a", 1, false}, {"b", 1, false}, {"", 3, false}, {"a", 2, true},
		{"c", 1, false}, // a word nobody wrote
		{"c", 0, false}, {"a", 3, false},
	}
	for i, s := range steps {
		l.set(s.word, s.n)
		if l.final() != s.final {
			t.Fatalf("step %d (%s=%d): final %v, want %v (%s)", i, s.word, s.n, l.final(), s.final, l)
		}
	}
	if err := l.check(); err == nil || !strings.Contains(err.Error(), `"a": count 3, want 2`) {
		t.Errorf("check: %v, want a's count named", err)
	}
}

// TestAwaitCounts runs awaitCounts against a fake cluster: it must end when
// the latest counts are final, and fail when they never are or when the
// system exits.
func TestAwaitCounts(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, demoOutput))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(demoOutput))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(word string, n int64) {
		rec := &kgo.Record{Key: []byte(word), Value: binary.BigEndian.AppendUint64(nil, uint64(n))}
		if err := prod.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	await := func(want map[string]int64, exited <-chan struct{}) (time.Time, time.Time, error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(demoOutput),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return awaitCounts(ctx, cl, newLatestCounts(&wordCounts{words: want}), exited, 500*time.Millisecond, func() {})
	}
	// Updates as a KTable's changelog holds them, the empty word included.
	for _, u := range []struct {
		word string
		n    int64
	}{{"a", 1}, {"b", 2}, {"", 1}, {"a", 2}, {"c", 1}, {"a", 4}} {
		produce(u.word, u.n)
	}
	running := make(chan struct{})
	first, last, err := await(map[string]int64{"a": 4, "b": 2, "c": 1}, running)
	if err != nil || first.IsZero() || last.Before(first) {
		t.Errorf("final counts: first %v, last %v, err %v; want both times and no error", first, last, err)
	}
	if _, _, err := await(map[string]int64{"a": 5, "b": 2, "c": 1}, running); err == nil || !strings.Contains(err.Error(), "no output for") {
		t.Errorf("counts never final: got %v, want an idle error", err)
	}
	exited := make(chan struct{})
	close(exited)
	if _, _, err := await(map[string]int64{"a": 5}, exited); !errors.Is(err, errExited) {
		t.Errorf("system exited: got %v, want errExited", err)
	}
}

func TestParseFlagsKStreamsDefaults(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil || slices.Contains(c.systems, "kstreams") || slices.Contains(c.runs, "words") {
		t.Errorf("without -kstreams-libs: systems %v, runs %v, err %v; want neither kstreams nor words", c.systems, c.runs, err)
	}
	c, err = parseFlags([]string{"-kstreams-libs", "/x"})
	if err != nil || !slices.Contains(c.systems, "kstreams") || !slices.Contains(c.runs, "words") {
		t.Errorf("with -kstreams-libs: systems %v, runs %v, err %v; want kstreams and words", c.systems, c.runs, err)
	}
	if _, err := parseFlags([]string{"-runs", "words", "-systems", "spark"}); err == nil {
		t.Error("-runs words -systems spark: no error, but Spark sits out the words run")
	}
	c, _ = parseFlags([]string{"-systems", "kstreams", "-runs", "words"})
	if err := c.checkPrereqs(); err == nil || !strings.Contains(err.Error(), "-kstreams-libs") {
		t.Errorf("kstreams without -kstreams-libs: got %v, want an error naming -kstreams-libs", err)
	}
}
