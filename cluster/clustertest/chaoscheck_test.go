package clustertest_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// checker reads a word count's jsonl output in complete mode, as submit
// prints it ({"batch":N,"word":W,"count":C}, a batch's rows together),
// and checks what must hold whatever fails: every batch id comes once
// (a batch output twice, by a deposed leader or a re-run, is a duplicate),
// and no word's count goes back from one batch to the next (a decrease
// means a rollback or a double count undone leaked). verdict compares the
// last batch with the truth. Its methods are safe for concurrent use.
type checker struct {
	mu struct {
		sync.Mutex
		cur       int64            // the batch being read, -1 before the first
		curCounts map[string]int64 // its rows so far
		last      map[string]int64 // the counts of the batch before cur
		seen      map[int64]bool   // the batches begun
		batches   []seenBatch      // each batch's first row, in order
		dups      []int64          // batches output again
		decreases []string         // counts that went back
		bad       []string         // rows that do not decode
	}
}

// seenBatch is a batch id and when its first row was read.
type seenBatch struct {
	id int64
	at time.Time
}

func newChecker() *checker {
	c := &checker{}
	c.mu.cur = -1
	c.mu.seen = map[int64]bool{}
	c.mu.last = map[string]int64{}
	return c
}

// line takes one line of output, read at at. Lines that are not rows (the
// output of other sinks) are ignored.
func (c *checker) line(s string, at time.Time) {
	if !strings.HasPrefix(s, `{"batch":`) {
		return
	}
	var row struct {
		Batch int64  `json:"batch"`
		Word  string `json:"word"`
		Count int64  `json:"count"`
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := json.Unmarshal([]byte(s), &row); err != nil {
		c.mu.bad = append(c.mu.bad, fmt.Sprintf("%q: %v", s, err))
		return
	}
	if row.Batch != c.mu.cur {
		c.endBatchLocked()
		if c.mu.seen[row.Batch] || row.Batch < c.mu.cur {
			c.mu.dups = append(c.mu.dups, row.Batch)
		}
		c.mu.cur, c.mu.curCounts = row.Batch, map[string]int64{}
		c.mu.seen[row.Batch] = true
		c.mu.batches = append(c.mu.batches, seenBatch{row.Batch, at})
	} else if _, ok := c.mu.curCounts[row.Word]; ok {
		// The same batch again, right after itself.
		c.mu.dups = append(c.mu.dups, row.Batch)
		c.endBatchLocked()
		c.mu.curCounts = map[string]int64{}
	}
	c.mu.curCounts[row.Word] = row.Count
}

// endBatchLocked checks the batch read against the one before and makes it
// the last.
func (c *checker) endBatchLocked() {
	if c.mu.curCounts == nil {
		return
	}
	for _, w := range slices.Sorted(maps.Keys(c.mu.last)) {
		if n, before := c.mu.curCounts[w], c.mu.last[w]; n < before {
			c.mu.decreases = append(c.mu.decreases, fmt.Sprintf("batch %d: %q %d -> %d", c.mu.cur, w, before, n))
		}
	}
	c.mu.last, c.mu.curCounts = c.mu.curCounts, nil
}

// batchAfter returns the first batch whose first row was read after t.
func (c *checker) batchAfter(t time.Time) (seenBatch, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.mu.batches {
		if b.at.After(t) {
			return b, true
		}
	}
	return seenBatch{}, false
}

// counts returns the counts of the latest batch read (complete, unless its
// rows are still being read).
func (c *checker) counts() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.curCounts != nil {
		return maps.Clone(c.mu.curCounts)
	}
	return maps.Clone(c.mu.last)
}

// verdict ends the batch being read (the output has ended) and compares
// the last batch with truth.
func (c *checker) verdict(truth map[string]int64) verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endBatchLocked()
	v := verdict{
		batches: len(c.mu.batches), last: c.mu.cur,
		dups: slices.Clone(c.mu.dups), decreases: slices.Clone(c.mu.decreases), bad: slices.Clone(c.mu.bad),
	}
	for _, w := range slices.Sorted(maps.Keys(truth)) {
		got, want := c.mu.last[w], truth[w]
		v.words += want
		switch {
		case got < want:
			v.lost += want - got
			v.wrong = append(v.wrong, fmt.Sprintf("%q %d, want %d", w, got, want))
		case got > want:
			v.doubled += got - want
			v.wrong = append(v.wrong, fmt.Sprintf("%q %d, want %d", w, got, want))
		}
	}
	for _, w := range slices.Sorted(maps.Keys(c.mu.last)) {
		if _, ok := truth[w]; !ok {
			v.doubled += c.mu.last[w]
			v.wrong = append(v.wrong, fmt.Sprintf("%q %d, in no line", w, c.mu.last[w]))
		}
	}
	return v
}

// verdict is what the checker found.
type verdict struct {
	batches        int   // batches read
	last           int64 // the last batch's id
	words          int64 // words produced
	lost, doubled  int64 // words the last batch counts too few, too many times
	wrong          []string
	dups           []int64  // batch ids output more than once
	decreases, bad []string // counts that went back; rows that do not decode
}

func (v verdict) ok() bool {
	return v.batches > 0 && v.lost == 0 && v.doubled == 0 && len(v.dups) == 0 && len(v.decreases) == 0 && len(v.bad) == 0
}

func (v verdict) String() string {
	var b strings.Builder
	res := "FAIL"
	if v.ok() {
		res = "OK"
	}
	fmt.Fprintf(&b, "%s: %d words produced, %d lost, %d counted twice; %d batches read (last %d), %d output more than once, %d counts that went back, %d rows unreadable",
		res, v.words, v.lost, v.doubled, v.batches, v.last, len(v.dups), len(v.decreases), len(v.bad))
	var dups []string
	for _, id := range v.dups {
		dups = append(dups, fmt.Sprint(id))
	}
	for _, l := range []struct {
		what  string
		items []string
	}{
		{"wrong final counts", v.wrong},
		{"batches output more than once", dups},
		{"counts that went back", v.decreases},
		{"unreadable rows", v.bad},
	} {
		if len(l.items) > 0 {
			fmt.Fprintf(&b, "\n  %s: %s", l.what, strings.Join(l.items[:min(len(l.items), 10)], "; "))
		}
	}
	return b.String()
}

// TestChaosChecker: the checker finds what TestChaos must catch: words
// lost or counted twice in the last batch, a batch output twice (again
// later, or right after itself), a count that goes back, a row that does
// not decode.
func TestChaosChecker(t *testing.T) {
	truth := map[string]int64{"a": 3, "": 1}
	row := func(batch int64, w string, n int64) string {
		return fmt.Sprintf(`{"batch":%d,"word":%q,"count":%d}`, batch, w, n)
	}
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"exact", []string{row(0, "a", 1), "Batch: 0", row(1, "a", 3), row(1, "", 1)},
			"OK: 4 words produced, 0 lost, 0 counted twice; 2 batches read (last 1), 0 output more than once, 0 counts that went back, 0 rows unreadable"},
		{"lost", []string{row(0, "a", 2), row(0, "", 1)}, "1 lost, 0 counted twice"},
		{"doubled", []string{row(0, "a", 6), row(0, "", 1), row(0, "b", 1)}, "0 lost, 4 counted twice"},
		{"again later", []string{row(0, "a", 1), row(1, "a", 2), row(1, "", 1), row(0, "a", 3), row(0, "", 1)}, "batches output more than once: 0"},
		{"again at once", []string{row(0, "a", 3), row(0, "", 1), row(0, "a", 3), row(0, "", 1)}, "batches output more than once: 0"},
		{"went back", []string{row(0, "a", 2), row(0, "x", 1), row(1, "a", 1), row(2, "a", 3), row(2, "", 1)},
			`counts that went back: batch 1: "a" 2 -> 1; batch 1: "x" 1 -> 0`},
		{"unreadable", []string{row(0, "a", 3), row(0, "", 1), `{"batch":1,"word":`}, "unreadable rows"},
		{"no batch", nil, "FAIL: 4 words produced, 4 lost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecker()
			for _, l := range tc.lines {
				c.line(l, time.Now())
			}
			v := c.verdict(truth)
			if !strings.Contains(v.String(), tc.want) || v.ok() != strings.HasPrefix(tc.want, "OK") {
				t.Errorf("verdict %q (ok %v); want it to contain %q", v, v.ok(), tc.want)
			}
		})
	}
}
