package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/gostream/gostream/operators"
)

// Sink writes the output of each batch.
//
// AddBatch is called from the query's driver goroutine, once per batch in
// batch-id order. After a failure or restart the same batch id may be
// written again with the same rows: a sink that must not show duplicates
// makes AddBatch idempotent per batch id.
type Sink interface {
	AddBatch(ctx context.Context, b *Batch) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, b *Batch) error

// AddBatch calls f.
func (f SinkFunc) AddBatch(ctx context.Context, b *Batch) error { return f(ctx, b) }

// Batch is the output of one micro-batch. Its rows can be large (complete
// mode holds the whole result table), so they are streamed by Each.
type Batch struct {
	ID     int64
	Mode   OutputMode
	Schema operators.Schema
	each   func(fn operators.Emit) error
}

// Each calls fn for each output row; the row is borrowed for the call.
func (b *Batch) Each(fn operators.Emit) error { return b.each(fn) }

// Collect returns all output rows as Go values.
func (b *Batch) Collect() ([]Row, error) {
	names := b.Schema.Names()
	var rows []Row
	err := b.each(func(r operators.Row) error {
		rows = append(rows, newRow(names, r))
		return nil
	})
	return rows, err
}

// ConsoleSink prints each batch the way Spark's console sink does: a
// "Batch: N" banner and an ASCII table of the first NumRows rows, cells
// truncated to Truncate characters (0: no truncation).
type ConsoleSink struct {
	W        io.Writer
	NumRows  int
	Truncate int
	TimeZone *time.Location // timestamps are shown in it; nil: UTC
}

// AddBatch prints the batch.
func (c *ConsoleSink) AddBatch(_ context.Context, b *Batch) error {
	var cells [][]string
	more := false
	err := b.Each(func(r operators.Row) error {
		if len(cells) >= c.NumRows {
			more = true
			return errStopEach
		}
		row := make([]string, len(r))
		for i, v := range r {
			row[i] = c.cell(v)
		}
		cells = append(cells, row)
		return nil
	})
	if err != nil && !errors.Is(err, errStopEach) {
		return err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "-------------------------------------------\nBatch: %d\n-------------------------------------------\n", b.ID)
	buf.WriteString(ShowString(b.Schema.Names(), cells, c.Truncate > 0))
	if more {
		noun := "rows"
		if c.NumRows == 1 {
			noun = "row"
		}
		fmt.Fprintf(&buf, "only showing top %d %s\n", c.NumRows, noun)
	}
	buf.WriteString("\n")
	_, err = c.W.Write(buf.Bytes())
	return err
}

var errStopEach = errors.New("stop")

func (c *ConsoleSink) cell(v operators.Value) string {
	s := string(v.AppendTextIn(nil, c.TimeZone)) // a null is NULL, as Spark 3.5's show() prints it
	if c.Truncate > 0 && javaLen(s) > c.Truncate {
		if c.Truncate < 4 {
			return javaSubstring(s, c.Truncate)
		}
		return javaSubstring(s, c.Truncate-3) + "..."
	}
	return s
}

// ShowString renders a table like Spark's Dataset.show: columns at least 3
// wide, cells right-aligned when truncating (left-aligned otherwise), widths
// counted as Spark counts them (full-width characters count twice).
func ShowString(header []string, rows [][]string, rightAlign bool) string {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = max(3, halfWidth(h))
	}
	for _, r := range rows {
		for i, cell := range r {
			widths[i] = max(widths[i], halfWidth(cell))
		}
	}
	var b strings.Builder
	sep := func() {
		b.WriteByte('+')
		for _, w := range widths {
			b.WriteString(strings.Repeat("-", w))
			b.WriteByte('+')
		}
		b.WriteByte('\n')
	}
	line := func(cells []string) {
		b.WriteByte('|')
		for i, cell := range cells {
			pad := strings.Repeat(" ", widths[i]-halfWidth(cell))
			if rightAlign {
				b.WriteString(pad + cell)
			} else {
				b.WriteString(cell + pad)
			}
			b.WriteByte('|')
		}
		b.WriteByte('\n')
	}
	sep()
	line(header)
	sep()
	for _, r := range rows {
		line(r)
	}
	sep()
	return b.String()
}

// javaLen is the length of s in UTF-16 code units, as Java's String.length.
func javaLen(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// javaSubstring is Java's s.substring(0, n) over UTF-16 code units (a split
// surrogate pair is dropped rather than producing invalid UTF-8).
func javaSubstring(s string, n int) string {
	units := 0
	for i, r := range s {
		l := utf16.RuneLen(r)
		if units+l > n {
			return s[:i]
		}
		units += l
	}
	return s
}

// halfWidth is Spark's Utils.stringHalfWidth: UTF-16 length plus one for
// each full-width character.
func halfWidth(s string) int {
	n := javaLen(s)
	for _, r := range s {
		if fullWidth(r) {
			n++
		}
	}
	return n
}

func fullWidth(r rune) bool {
	return (r >= 0x1100 && r <= 0x115F) || (r >= 0x2E80 && r <= 0xA4CF) ||
		(r >= 0xAC00 && r <= 0xD7A3) || (r >= 0xF900 && r <= 0xFAFF) ||
		(r >= 0xFE10 && r <= 0xFE19) || (r >= 0xFE30 && r <= 0xFE6F) ||
		(r >= 0xFF00 && r <= 0xFF60) || (r >= 0xFFE0 && r <= 0xFFE6)
}

// JSONLSink writes one JSON object per output row, with the batch id first:
// {"batch":3,"word":"log","count":2}. Writing to Path is idempotent: a batch
// written again after a restart replaces the lines that batch (and any
// later one) wrote before. Writing to W (standard output), or to a Path that
// is a device or a pipe (/dev/null, a FIFO), which cannot be rewritten, is
// at-least-once.
type JSONLSink struct {
	Path     string
	W        io.Writer
	TimeZone *time.Location // timestamps are written in it; nil: UTC
	// Fence, when set, is called right before each change of the file at
	// Path: its cut on the first batch and each write (a write carries at
	// most 256 KiB). An error stops the batch at once, without writing; a
	// cluster's driver checks that it still leads there, so a leader that
	// was deposed while paused never writes again.
	Fence func() error

	mu      sync.Mutex
	f       *os.File
	checked bool
	stream  bool          // f is a device or a pipe: written, never read, cut or synced
	bw      *bufio.Writer // reused from batch to batch
}

// AddBatch appends the batch's rows.
func (s *JSONLSink) AddBatch(_ context.Context, b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.W
	if s.Path != "" {
		if err := s.openLocked(b.ID); err != nil {
			return err
		}
		w = s.f
	}
	if s.bw == nil {
		growPipe(w)
		s.bw = bufio.NewWriterSize(w, 256<<10)
	}
	bw := s.bw
	if s.f != nil && s.Fence != nil {
		w = fencedWriter{w: s.f, fence: s.Fence}
	}
	bw.Reset(w)
	// `{"batch":N` and each column's `,"name":`, encoded once per batch.
	head := strconv.AppendInt([]byte(`{"batch":`), b.ID, 10)
	names := b.Schema.Names()
	keys := make([][]byte, len(names))
	for i, n := range names {
		keys[i] = append(appendJSONString([]byte{','}, n), ':')
	}
	err := b.Each(func(r operators.Row) error {
		// Encoded in place in bw's free space, unless it does not fit.
		line := append(bw.AvailableBuffer(), head...)
		for i, v := range r {
			line = append(line, keys[i]...)
			line = appendJSON(line, v, b.Schema[i].Fields, s.TimeZone)
		}
		line = append(line, "}\n"...)
		_, err := bw.Write(line)
		return err
	})
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if s.f != nil && !s.stream {
		return s.f.Sync()
	}
	return nil
}

// Close closes the file.
func (s *JSONLSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// openLocked opens the file on the first batch and cuts off lines of batches
// >= first, which a crashed run wrote but never committed.
func (s *JSONLSink) openLocked(first int64) error {
	if s.checked {
		return nil
	}
	if st, err := os.Stat(s.Path); err == nil && !st.Mode().IsRegular() && !st.IsDir() {
		f, err := os.OpenFile(s.Path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("jsonl sink: %w (check it is writable)", err)
		}
		s.f, s.checked, s.stream = f, true, true
		return nil
	}
	f, err := os.OpenFile(s.Path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("jsonl sink: %w (check the directory exists and is writable)", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	var keep int64
	if err == nil {
		keep, err = keptLength(f, size, first)
	}
	if err == nil && keep < size && s.Fence != nil {
		err = s.Fence()
	}
	if err == nil && keep < size {
		err = f.Truncate(keep)
	}
	if err == nil {
		_, err = f.Seek(keep, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("jsonl sink %s: %w", s.Path, err)
	}
	s.f, s.checked = f, true
	return nil
}

// fencedWriter calls fence before each write to w.
type fencedWriter struct {
	w     io.Writer
	fence func() error
}

func (f fencedWriter) Write(p []byte) (int, error) {
	if err := f.fence(); err != nil {
		return 0, err
	}
	return f.w.Write(p)
}

// jsonlBlock is how much of its file the jsonl sink reads back at a time
// (a variable for tests).
var jsonlBlock int64 = 64 << 10

// keptLength returns how much of a jsonl file of size bytes to keep before
// batch is written: up to the end of its last line of an earlier batch. A
// last line without its newline, torn by a crash, is dropped. Batches follow
// each other in the file in id order, so it reads whole lines backwards from
// the end and stops at the first line of an earlier batch: a restart reads
// the lines it cuts and one more, whatever the file's length. A file whose
// first line is already of batch or later is cut whole (a new query writing
// to an old query's file).
func keptLength(r io.ReaderAt, size, batch int64) (int64, error) {
	head := make([]byte, min(size, jsonlBlock))
	if _, err := r.ReadAt(head, 0); err != nil {
		return 0, err
	}
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		if id, err := lineBatch(head[:i+1], 0); err == nil && id >= batch {
			return 0, nil
		}
	}
	// buf holds the bytes of the file from off to end, which are whole
	// lines (and, until the first is found, the torn line after them).
	var buf []byte
	off, end := size, size
	prev := func() error { // reads the block before off into buf
		n := min(off, jsonlBlock)
		b := make([]byte, n, n+int64(len(buf)))
		if _, err := r.ReadAt(b, off-n); err != nil {
			return err
		}
		buf, off = append(b, buf...), off-n
		return nil
	}
	for torn := true; end > 0; {
		i := bytes.LastIndexByte(buf[:max(0, len(buf)-1)], '\n')
		if torn {
			i = bytes.LastIndexByte(buf, '\n')
		}
		if i < 0 && off > 0 {
			if err := prev(); err != nil {
				return 0, err
			}
			continue
		}
		line := buf[i+1:]
		buf = buf[:i+1]
		if torn {
			end, torn = off+int64(len(buf)), false
			continue
		}
		start := end - int64(len(line))
		id, err := lineBatch(line, start)
		if err != nil {
			return 0, err
		}
		if id < batch {
			return end, nil
		}
		end = start
	}
	return 0, nil
}

// lineBatch returns the batch id of a jsonl line that starts at byte off.
func lineBatch(line []byte, off int64) (int64, error) {
	var head struct {
		Batch *int64 `json:"batch"`
	}
	if json.Unmarshal(line, &head) != nil || head.Batch == nil {
		return 0, fmt.Errorf("line at byte %d is not a gostream jsonl record; refusing to rewrite the file (use a new path)", off)
	}
	return *head.Batch, nil
}

// appendJSON appends v as JSON; fields names a struct's members, which
// makes it an object (without them, it is an array of its values).
func appendJSON(b []byte, v operators.Value, fields operators.Schema, zone *time.Location) []byte {
	switch v.Kind {
	case operators.KindNull:
		return append(b, "null"...)
	case operators.KindLong:
		return strconv.AppendInt(b, v.I, 10)
	case operators.KindDouble:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			return appendJSONString(b, string(v.AppendText(nil)))
		}
		return strconv.AppendFloat(b, v.F, 'g', -1, 64)
	case operators.KindBool:
		return strconv.AppendBool(b, v.I != 0)
	case operators.KindStruct:
		if len(fields) != len(v.A) {
			break
		}
		b = append(b, '{')
		for i, e := range v.A {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(appendJSONString(b, fields[i].Name), ':')
			b = appendJSON(b, e, fields[i].Fields, zone)
		}
		return append(b, '}')
	}
	switch v.Kind {
	case operators.KindArray, operators.KindStruct:
		b = append(b, '[')
		for i, e := range v.A {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, e, nil, zone)
		}
		return append(b, ']')
	case operators.KindString:
		return appendJSONString(b, operators.ToValidUTF8(v.B))
	}
	return appendJSONString(b, v.AppendTextIn(nil, zone))
}

func appendJSONString[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	for len(s) > 0 {
		// Copy the run of bytes that need no escape in one append.
		i := 0
		for i < len(s) && s[i] >= 0x20 && s[i] != '"' && s[i] != '\\' {
			i++
		}
		b = append(b, s[:i]...)
		if i == len(s) {
			break
		}
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		}
		s = s[i+1:]
	}
	return append(b, '"')
}

// memoryTable is the memory sink's table: complete mode replaces its rows,
// append and update modes add rows.
type memoryTable struct {
	mu   sync.Mutex
	rows []Row
	last int64
}

func (s *Session) memorySink(name string, mode OutputMode) Sink {
	s.mu.Lock()
	t := s.mu.tables[name]
	if t == nil {
		t = &memoryTable{last: -1}
		s.mu.tables[name] = t
	}
	s.mu.Unlock()
	return SinkFunc(func(_ context.Context, b *Batch) error {
		rows, err := b.Collect()
		if err != nil {
			return err
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if b.ID <= t.last {
			return nil // already holds this batch
		}
		if mode == Complete {
			t.rows = rows
		} else {
			t.rows = append(t.rows, rows...)
		}
		t.last = b.ID
		return nil
	})
}

// Table returns a copy of the rows of the memory sink's table name (Spark:
// spark.table(name) over a memory sink), or nil if there is none.
func (s *Session) Table(name string) []Row {
	s.mu.Lock()
	t := s.mu.tables[name]
	s.mu.Unlock()
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Row(nil), t.rows...)
}
