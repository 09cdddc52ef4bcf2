package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
)

// WordCountDemo's topics, fixed in its code.
const (
	demoInput  = "streams-plaintext-input"
	demoOutput = "streams-wordcount-output"
)

// wordsRun loads cfg.wordsRecords lines into WordCountDemo's input topic,
// creates its output topic, and runs every system that takes part over
// them: Kafka Streams' WordCountDemo and gostream's job of the same split.
func (s *suite) wordsRun(ctx context.Context) error {
	gen := newGenerator(s.cfg.seed)
	if err := s.load(ctx, demoInput, s.cfg.wordsRecords, func(int) []byte { return gen.line() }); err != nil {
		return err
	}
	if err := s.cluster.CreateTopic(ctx, demoOutput, 3, 2); err != nil {
		return fmt.Errorf("create topic %s: %w", demoOutput, err)
	}
	j := s.bulkJob(demoInput, s.cfg.wordsRecords, s.cfg.batches, false)
	j.demoSplit = true
	s.runAll(ctx, "words", j, demoCounts(gen.expected()), 1)
	return nil
}

// demoWords returns the words Kafka Streams' WordCountDemo makes of a line,
//
//	value.toLowerCase(Locale.getDefault()).split("\\W+")
//
// with Java's semantics, on a JVM whose default locale is not Turkish, Azeri
// or Lithuanian (the suite starts it with -Duser.language=en). \W is ASCII's
// [^A-Za-z0-9_]; a line that starts with a non-word character yields a
// leading empty word, trailing empty words are dropped (so a line of
// non-word characters yields none), and a line without a non-word
// character is one word (the empty line, one empty word). The line is
// decoded as UTF-8, as Kafka's StringDeserializer does. Every non-ASCII
// character is a non-word character, also after lowercasing, but two:
// U+0130 (İ) lowercases to i and a combining dot, U+212A (the Kelvin sign)
// to k.
func demoWords(line string) []string {
	// Lowercase as Java does, each non-word character turned into a space.
	low := make([]byte, 0, len(line))
	for _, r := range line {
		switch {
		case 'A' <= r && r <= 'Z':
			low = append(low, byte(r)+'a'-'A')
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '_':
			low = append(low, byte(r))
		case r == '\u0130':
			low = append(low, 'i', ' ')
		case r == '\u212a':
			low = append(low, 'k')
		default:
			low = append(low, ' ')
		}
	}
	if bytes.IndexByte(low, ' ') < 0 {
		return []string{string(low)}
	}
	words := strings.Fields(string(low))
	if low[0] == ' ' && len(words) > 0 {
		words = append([]string{""}, words...)
	}
	return words
}

// demoCounts returns the counts WordCountDemo must report for lines whose
// space-separated tokens have the counts tokens (a generator's expected).
// A space is a non-word character, so a line's words are its tokens' words,
// but for the empty word, which is left out: gostream's job drops empty
// words, and Java yields one for a line that starts with a non-word
// character, which the generator's lines never do (they start with their
// level). Unique tokens (markers, keys) are lowercase word characters
// already, so their digest carries over.
func demoCounts(tokens *wordCounts) *wordCounts {
	want := &wordCounts{words: make(map[string]int64, len(tokens.words)), unique: tokens.unique}
	for tok, n := range tokens.words {
		for _, w := range demoWords(tok) {
			if w != "" {
				want.words[w] += n
			}
		}
	}
	return want
}
