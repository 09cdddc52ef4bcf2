package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
)

// commonWords seeds the vocabulary with words that log lines really use; the
// rest of the vocabulary is made of syllables so that the Zipf tail is long.
var commonWords = []string{
	"the", "request", "to", "from", "user", "failed", "connection", "error", "for", "in",
	"completed", "started", "id", "session", "timeout", "retry", "service", "server", "client",
	"cache", "miss", "hit", "query", "took", "ms", "status", "ok", "GET", "POST", "PUT", "DELETE",
	"handler", "response", "bytes", "sent", "received", "worker", "thread", "pool", "queue",
	"job", "scheduled", "finished", "with", "code", "warning", "deprecated", "config", "loaded",
	"reload", "disk", "usage", "memory", "heap", "gc", "pause", "node", "leader", "elected",
	"partition", "offset", "commit", "batch", "record", "checkpoint", "token", "expired",
	"auth", "denied", "granted", "path", "/api/v1/users", "/api/v1/orders", "/health",
	"db", "transaction", "rollback", "latency", "slow", "upstream", "downstream", "closed",
}

var syllables = []string{
	"ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "pa", "xi", "zu", "bre", "tor",
	"gan", "fel", "mor", "qui", "ste", "lan",
}

// levels are the log levels a line starts with, with their weights out of 100.
var levels = []struct {
	word   string
	weight int
}{{"INFO", 80}, {"WARN", 12}, {"ERROR", 6}, {"DEBUG", 2}}

// Punctuation variants of a vocabulary word: each is counted as its own word,
// as Spark's split on ' ' does.
const (
	plain = iota
	comma
	period
	colon
	bracketed
	numVariants
)

func variant(word string, v int) string {
	switch v {
	case comma:
		return word + ","
	case period:
		return word + "."
	case colon:
		return word + ":"
	case bracketed:
		return "[" + word + "]"
	}
	return word
}

// generator produces the benchmark's log lines from a seed, deterministically,
// and tallies the word counts a correct word count must report. Vocabulary
// words follow a Zipf distribution; key tokens (see keyLine) are unique and
// are only folded into a digest, so that tallying ten million distinct keys
// needs no memory.
//
// A generator is not safe for concurrent use.
type generator struct {
	rng    *rand.Rand
	zipf   *rand.Zipf
	vocab  []string
	counts [][numVariants]int64 // by vocabulary index and punctuation variant
	empty  int64                // empty words, from double spaces
	unique digest               // tokens that occur exactly once
	buf    []byte
}

// vocabSize is the number of distinct vocabulary words before punctuation.
const vocabSize = 50_000

func newGenerator(seed uint64) *generator {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	vocab := make([]string, 0, vocabSize)
	vocab = append(vocab, commonWords...)
	for i := 0; len(vocab) < vocabSize; i++ {
		w := ""
		for n := i; ; n /= len(syllables) {
			w += syllables[n%len(syllables)]
			if n < len(syllables) {
				break
			}
		}
		vocab = append(vocab, w+strconv.Itoa(i%97))
	}
	for _, l := range levels {
		vocab = append(vocab, l.word)
	}
	return &generator{
		rng:    rng,
		zipf:   rand.NewZipf(rng, 1.1, 2, uint64(vocabSize-1)),
		vocab:  vocab,
		counts: make([][numVariants]int64, len(vocab)),
	}
}

// lineWords draws a line length: mostly 6-15 words, some short, a few long.
func (g *generator) lineWords() int {
	switch p := g.rng.IntN(100); {
	case p < 15:
		return 1 + g.rng.IntN(4)
	case p < 90:
		return 6 + g.rng.IntN(10)
	default:
		return 20 + g.rng.IntN(40)
	}
}

// addWord appends vocabulary word i, maybe punctuated, and counts it.
func (g *generator) addWord(i int) {
	v := plain
	if p := g.rng.IntN(100); p < 12 {
		v = 1 + p%(numVariants-1)
	}
	g.counts[i][v]++
	g.buf = append(g.buf, variant(g.vocab[i], v)...)
}

// line returns the next log line. The slice is reused by the next call.
func (g *generator) line() []byte {
	g.buf = g.buf[:0]
	p, lvl := g.rng.IntN(100), 0
	for ; p >= levels[lvl].weight; lvl++ {
		p -= levels[lvl].weight
	}
	i := vocabSize + lvl
	g.counts[i][plain]++
	g.buf = append(g.buf, g.vocab[i]...)
	for range g.lineWords() {
		g.buf = append(g.buf, ' ')
		if g.rng.IntN(400) == 0 {
			// A double space: Spark's split yields an empty word.
			g.empty++
			g.buf = append(g.buf, ' ')
		}
		g.addWord(int(g.zipf.Uint64()))
	}
	return g.buf
}

// markerPrefix starts every marker token; no vocabulary word contains it.
const markerPrefix = "zzmark"

// markerToken returns marker n's token.
func markerToken(n int) string { return fmt.Sprintf("%s%09d", markerPrefix, n) }

// linePool is a ring of lines generated ahead of time, so that a steady
// producer spends no CPU on drawing words while the systems it feeds are
// measured: on the suite's 2-core machine, drawing 100,000 lines/s took a
// third of a core. The lines are read-only; line returns them in turn.
type linePool struct {
	arena []byte
	ends  []int // ends[i] is where line i ends in arena
	next  int
}

// newLinePool generates n lines with g.
func newLinePool(g *generator, n int) *linePool {
	p := &linePool{ends: make([]int, 0, n)}
	for range n {
		p.arena = append(p.arena, g.line()...)
		p.ends = append(p.ends, len(p.arena))
	}
	return p
}

// line returns the next line of the ring; it must not be modified.
func (p *linePool) line() []byte {
	start := 0
	if p.next > 0 {
		start = p.ends[p.next-1]
	}
	end := p.ends[p.next]
	p.next = (p.next + 1) % len(p.ends)
	return p.arena[start:end:end]
}

// markerLine returns a copy of line with marker n appended.
func markerLine(line []byte, n int) []byte {
	tok := markerToken(n)
	b := make([]byte, 0, len(line)+1+len(tok))
	return append(append(append(b, line...), ' '), tok...)
}

// keyLine returns a line of perLine distinct key tokens, numbered from first,
// for the state-scale run.
func (g *generator) keyLine(first, perLine int) []byte {
	g.buf = g.buf[:0]
	for k := first; k < first+perLine; k++ {
		if k > first {
			g.buf = append(g.buf, ' ')
		}
		start := len(g.buf)
		g.buf = append(g.buf, 'k')
		g.buf = strconv.AppendInt(g.buf, int64(k), 10)
		g.unique.add(string(g.buf[start:]), 1)
	}
	return g.buf
}

// expected returns the counts of the lines generated so far: vocabulary
// words in a map, unique tokens as a digest.
func (g *generator) expected() *wordCounts {
	wc := &wordCounts{words: make(map[string]int64), unique: g.unique}
	for i, byVariant := range g.counts {
		for v, n := range byVariant {
			if n > 0 {
				wc.words[variant(g.vocab[i], v)] = n
			}
		}
	}
	if g.empty > 0 {
		wc.words[""] = g.empty
	}
	return wc
}
