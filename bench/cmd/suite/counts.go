package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// digest is an order-independent fingerprint of a set of (word, count) rows:
// the number of rows and the sum of their hashes.
type digest struct {
	rows int64
	sum  uint64
}

func (d *digest) add(word string, count int64) {
	h := fnv.New64a()
	h.Write([]byte(word))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, count, 10))
	d.rows++
	d.sum += h.Sum64()
}

// wordCounts are the final counts a system must report: vocabulary words
// exactly, unique tokens through their digest.
type wordCounts struct {
	words  map[string]int64
	unique digest
}

// countRow is one output row of either system's sink.
type countRow struct {
	Batch *int64 `json:"batch"`
	Word  string `json:"word"`
	Count int64  `json:"count"`
}

// checker compares a system's final rows with the expected counts.
type checker struct {
	want     *wordCounts
	seen     map[string]bool
	unique   digest
	problems []string
}

func newChecker(want *wordCounts) *checker {
	return &checker{want: want, seen: make(map[string]bool, len(want.words))}
}

// maxProblems caps how many differing words a mismatch report lists.
const maxProblems = 5

func (c *checker) problem(format string, args ...any) {
	if len(c.problems) < maxProblems {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

func (c *checker) row(r countRow) {
	want, ok := c.want.words[r.Word]
	switch {
	case !ok:
		c.unique.add(r.Word, r.Count)
	case c.seen[r.Word]:
		c.problem("word %q reported twice", r.Word)
	case r.Count != want:
		c.problem("word %q: count %d, want %d", r.Word, r.Count, want)
	}
	c.seen[r.Word] = true
}

// result returns nil when the rows matched, else an error listing the first
// differences.
func (c *checker) result() error {
	for w, n := range c.want.words {
		if !c.seen[w] {
			c.problem("word %q (count %d) missing", w, n)
		}
	}
	if c.unique != c.want.unique {
		c.problem("unique tokens: %d rows with digest %x, want %d rows with digest %x",
			c.unique.rows, c.unique.sum, c.want.unique.rows, c.want.unique.sum)
	}
	if len(c.problems) == 0 {
		return nil
	}
	return fmt.Errorf("counts differ: %s", strings.Join(c.problems, "; "))
}

// checkJSONLines checks the final batch of a gostream jsonl sink file, whose
// rows carry a "batch" field and come batch after batch (in complete mode
// every batch holds the whole result table).
func checkJSONLines(path string, want *wordCounts) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read gostream output: %w", err)
	}
	defer f.Close()
	var c *checker
	last := int64(-1)
	err = eachJSONLine(f, func(r countRow) error {
		if r.Batch == nil {
			return fmt.Errorf("%s: row for %q has no batch field", path, r.Word)
		}
		if *r.Batch != last {
			c, last = newChecker(want), *r.Batch
		}
		c.row(r)
		return nil
	})
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("%s holds no rows (did the query write anything?)", path)
	}
	return c.result()
}

// checkSparkDir checks the JSON part files Spark wrote for its last batch.
func checkSparkDir(dir string, want *wordCounts) error {
	parts, err := filepath.Glob(filepath.Join(dir, "part-*"))
	if err != nil || len(parts) == 0 {
		return fmt.Errorf("no part files in %s (did the Spark query finish a batch? see its log)", dir)
	}
	sort.Strings(parts)
	c := newChecker(want)
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("read Spark output: %w", err)
		}
		err = eachJSONLine(f, func(r countRow) error { c.row(r); return nil })
		f.Close()
		if err != nil {
			return err
		}
	}
	return c.result()
}

func eachJSONLine(r io.Reader, fn func(countRow) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var row countRow
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return fmt.Errorf("bad output row %q: %w", truncate(sc.Text(), 120), err)
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	return sc.Err()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
