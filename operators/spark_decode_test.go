package operators

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gostream/gostream/internal/testseed"
)

// decodeSeed is the seed TestDecodeLikeJava always runs, besides a new one
// on every run (or GOSTREAM_SEED's).
const decodeSeed = 20

// splitPatterns are the patterns TestDecodeLikeJava splits with, the first
// the word count's.
var splitPatterns = []string{" ", `\s+`, `\W+`, `[,;]`, `\S+`, `\d+`, `[^a-z]+`, `\p{Punct}`}

// TestDecodeLikeJava is a differential test against the JVM: random byte
// strings, rich in malformed UTF-8 of every kind, go through
// testdata/SparkDecode.java (what Spark 3.5 does for
// split(CAST(value AS STRING), pattern) on JDK 17) and through CAST, the
// splitter (for each of splitPatterns) and every entry of the word count's
// map side, which must give the same strings, words and counts, byte for
// byte.
func TestDecodeLikeJava(t *testing.T) {
	java, err := exec.LookPath("java")
	if err != nil {
		if testing.Short() {
			t.Skip("java not found: this differential test runs the JVM's UTF-8 decoder (install openjdk-17-jre-headless)")
		}
		t.Fatal("java not found: this differential test runs the JVM's UTF-8 decoder; install a JDK 17 (apt-get install openjdk-17-jre-headless), as scripts/test.sh does")
	}
	for _, seed := range []uint64{decodeSeed, testseed.Seed(t)} {
		t.Logf("seed %d", seed)
		inputs := malformedStrings(rand.New(rand.NewPCG(seed, 0)), 4000)
		decoded, words := runJava(t, java, inputs)
		checkDecode(t, seed, inputs, decoded, words)
	}
}

// runJava returns each input decoded by the JVM, re-encoded, and its words
// split with each of splitPatterns: words[p][i] are input i's with pattern p.
func runJava(t *testing.T, java string, inputs [][]byte) (decoded [][]byte, words [][][][]byte) {
	t.Helper()
	var in bytes.Buffer
	for _, s := range inputs {
		in.WriteString(hex.EncodeToString(s))
		in.WriteByte('\n')
	}
	cmd := exec.Command(java, append([]string{"testdata/SparkDecode.java"}, splitPatterns...)...)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("java testdata/SparkDecode.java: %v\n%s", err, stderr.Bytes())
	}
	words = make([][][][]byte, len(splitPatterns))
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 1+len(splitPatterns) {
			t.Fatalf("java: line %q has %d fields, want %d", sc.Text(), len(fields), 1+len(splitPatterns))
		}
		decoded = append(decoded, mustHex(t, fields[0]))
		for p, list := range fields[1:] {
			var ws [][]byte
			for _, w := range strings.Split(list, ",") {
				ws = append(ws, mustHex(t, w))
			}
			words[p] = append(words[p], ws)
		}
	}
	if len(decoded) != len(inputs) {
		t.Fatalf("java answered %d lines for %d inputs", len(decoded), len(inputs))
	}
	return decoded, words
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("java: %v", err)
	}
	return b
}

// checkDecode compares gostream with the JVM's answers for inputs.
func checkDecode(t *testing.T, seed uint64, inputs, decoded [][]byte, words [][][][]byte) {
	t.Helper()
	fails := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if fails++; fails <= 10 {
			t.Errorf("seed %d: "+format, append([]any{seed}, args...)...)
		}
	}
	for i, in := range inputs {
		if got := ToValidUTF8(in); !bytes.Equal(got, decoded[i]) {
			fail("CAST(x'%x' AS STRING) = x'%x', Java decodes x'%x'", in, got, decoded[i])
		}
		if got := String(in).AppendText(nil); !bytes.Equal(got, decoded[i]) {
			fail("the console shows string x'%x' as x'%x', Java decodes x'%x'", in, got, decoded[i])
		}
	}
	for p, pattern := range splitPatterns {
		sp, err := NewSplitter(pattern, -1)
		if err != nil {
			t.Fatal(err)
		}
		for i, in := range inputs {
			var got [][]byte
			sp.Each(in, func(w []byte) { got = append(got, bytes.Clone(w)) })
			if !slices.EqualFunc(got, words[p][i], bytes.Equal) {
				fail("split(x'%x', %q) = %x, Java splits %x", in, pattern, got, words[p][i])
			}
		}
	}
	want := map[string]int{}
	for _, ws := range words[0] {
		for _, w := range ws {
			want[string(w)]++
		}
	}
	// The word count, its map side fed through each of its entries.
	rows := make([]Row, len(inputs))
	for i, in := range inputs {
		rows[i] = kafkaRow(string(in), int64(i%3))
	}
	got := runAgg(t, wordCount(), 3, rows)
	for _, w := range slices.Sorted(maps.Keys(want)) {
		if got[w] != fmt.Sprint(want[w]) {
			fail("word count: x'%x' counted %s times, Java %d (in x'%x')", w, cmp.Or(got[w], "0"), want[w], firstWith(inputs, words[0], w))
		}
	}
	for w := range got {
		if _, ok := want[w]; !ok {
			fail("word count: x'%x' counted %s times, never a word for Java", w, got[w])
		}
	}
	if fails > 10 {
		t.Errorf("seed %d: %d more differences", seed, fails-10)
	}
}

// firstWith returns the first input the JVM splits into word w, or nil.
func firstWith(inputs [][]byte, words [][][]byte, w string) []byte {
	for i, ws := range words {
		if slices.ContainsFunc(ws, func(x []byte) bool { return string(x) == w }) {
			return inputs[i]
		}
	}
	return nil
}

// malformedStrings returns n random byte strings made of pieces of every
// kind of malformed UTF-8 (truncated sequences, overlongs, surrogates, code
// points above U+10FFFF, lone continuation bytes, bytes F5-FF), valid
// characters of every length, ASCII, spaces and other separators. Some are longer than 64
// bytes, with malformed bytes after a long valid stretch, where the word
// counter's 64-byte scan changes paths.
func malformedStrings(r *rand.Rand, n int) [][]byte {
	cont := func() byte { return byte(0x80 + r.IntN(0x40)) }
	valid := []rune{'a', 'é', 'ß', '\u07ff', '\u0800', '€', '한', '\ud7ff', '\ue000', '\ufffd', '\uffff', '\U00010000', '🚀', '\U0010ffff'}
	pieces := []func() []byte{
		func() []byte { return []byte(" ") },
		func() []byte { return []byte("  ") },
		func() []byte { return []byte("word") },
		func() []byte { return []byte(strings.Repeat("x", r.IntN(80))) },
		func() []byte { return utf8.AppendRune(nil, valid[r.IntN(len(valid))]) },
		func() []byte { // a valid sequence cut short
			b := utf8.AppendRune(nil, valid[4+r.IntN(len(valid)-4)])
			return b[:1+r.IntN(len(b)-1)]
		},
		func() []byte { return []byte{0xc0 + byte(r.IntN(2)), cont()} },                            // overlong, 2 bytes
		func() []byte { return []byte{0xe0, 0x80 + byte(r.IntN(0x20)), cont()} },                   // overlong, 3 bytes
		func() []byte { return []byte{0xf0, 0x80 + byte(r.IntN(0x10)), cont(), cont()} },           // overlong, 4 bytes
		func() []byte { return []byte{0xed, 0xa0 + byte(r.IntN(0x20)), cont()} },                   // a surrogate
		func() []byte { return []byte{0xed, 0xa0 + byte(r.IntN(0x20))} },                           // a surrogate cut short
		func() []byte { return []byte{0xed, 0xa0 + byte(r.IntN(0x20)), cont(), 0xed, 0xb0, 0x80} }, // a surrogate pair
		func() []byte { return []byte{0xf4, 0x90 + byte(r.IntN(0x30)), cont(), cont()} },           // above U+10FFFF
		func() []byte { return []byte{0xf5 + byte(r.IntN(3)), cont(), cont(), cont()} },            // above U+10FFFF, F5-F7
		func() []byte { return []byte{cont()} },                                                    // a lone continuation byte
		func() []byte { return []byte{0xf5 + byte(r.IntN(11))} },                                   // F5-FF
		func() []byte { return []byte{0xc2 + byte(r.IntN(0x33))} },                                 // a lone lead byte
		func() []byte { return []byte{byte(r.IntN(256))} },
		func() []byte { // what the patterns other than ' ' split on, or not
			seps := []string{"\t", "\n", "\x0b", "\f", "\r", "\x1c", ",", ";", "_", "9", "-", "Z", "\u0085", "\u00a0", "\u2028"}
			return []byte(seps[r.IntN(len(seps))])
		},
	}
	out := make([][]byte, n)
	for i := range out {
		var s []byte
		for range r.IntN(24) {
			s = append(s, pieces[r.IntN(len(pieces))]()...)
		}
		out[i] = s
	}
	return out
}

// BenchmarkCastSplit is CAST(value AS STRING) and split(value, ' ') on log
// lines, valid UTF-8 and with malformed sequences.
func BenchmarkCastSplit(b *testing.B) {
	valid := make([][]byte, 1000)
	for i := range valid {
		valid[i] = fmt.Appendf(nil, `198.51.100.%d - - [24/Nov/2026:09:00:%02d +0000] "GET /api/é/%d HTTP/1.1" 200 %d`, i%50, i%60, i%300, i*7)
	}
	for _, c := range []struct {
		name  string
		lines [][]byte
	}{
		{"valid", valid},
		{"malformed", malformedStrings(rand.New(rand.NewPCG(decodeSeed, 0)), 1000)},
	} {
		b.Run(c.name, func(b *testing.B) {
			sp, err := NewSplitter(" ", -1)
			if err != nil {
				b.Fatal(err)
			}
			var size int64
			for _, l := range c.lines {
				size += int64(len(l))
			}
			n := 0
			count := func([]byte) { n++ }
			b.ReportAllocs()
			b.SetBytes(size)
			for b.Loop() {
				for _, l := range c.lines {
					sp.Each(l, count)
				}
			}
		})
	}
}
