package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// batchLog is a query's offsets log and commit log in one append-only file,
// <checkpoint>/batches. Each entry is a line, "<crc> <json>\n", where json is
// {"offsets":{...}} (batch N's offset ranges, written before it runs) or
// {"commit":N} (written once its state and sink output are durable), and
// crc is the CRC-32C of json as 8 hex digits. The first line,
// {"checkpoint":{...}}, is a copy of the checkpoint's metadata, so that a
// log is never taken for another checkpoint's (format 3; format 2 had no
// header). Appending an entry costs one write and one fsync: no file is
// created, renamed or listed per batch, which is most of a small batch's
// bookkeeping when each entry is a file (Spark's layout, and format 1 of
// gostream's checkpoints).
//
// A crash in the middle of an append leaves a torn last line, never synced,
// so never acknowledged: open cuts it off, once the whole checkpoint has
// been checked. Damage anywhere else is an error. Once the log holds
// compactAfter batches, it is rewritten with the last retainBatches (to a
// temporary file, synced and renamed).
type batchLog struct {
	dir  string // the checkpoint directory
	mu   sync.Mutex
	f    *os.File        // open for appending, once open returned
	head *checkpointMeta // the header, nil in a log of format 2
	ents []logEntry
	// good is the length of the intact lines, size the file's: a crash
	// left a torn last line when good < size.
	good, size int64
}

// logEntry is one line of the batch log: exactly one field is set, and
// Checkpoint only in the first line.
type logEntry struct {
	Offsets    *offsetEntry    `json:"offsets,omitempty"`
	Commit     *int64          `json:"commit,omitempty"`
	Checkpoint *checkpointMeta `json:"checkpoint,omitempty"`
}

// batchID is the batch the entry is about.
func (e logEntry) batchID() int64 {
	if e.Offsets != nil {
		return e.Offsets.BatchID
	}
	return *e.Commit
}

const (
	batchLogName = "batches"
	compactAfter = 4 * retainBatches
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// readBatchLog reads and checks the batch log of checkpoint dir, without
// changing it.
func readBatchLog(dir string) (*batchLog, error) {
	raw, err := os.ReadFile(filepath.Join(dir, batchLogName))
	if err != nil {
		return nil, damaged(dir, batchLogName, err)
	}
	head, ents, good, err := parseBatchLog(raw)
	if err != nil {
		return nil, damaged(dir, batchLogName, err)
	}
	return &batchLog{dir: dir, head: head, ents: ents, good: int64(good), size: int64(len(raw))}, nil
}

// open opens the log for appending, and cuts off its torn last line, if any.
func (l *batchLog) open() error {
	path := filepath.Join(l.dir, batchLogName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %w (check the path is writable)", ErrCheckpoint, err)
	}
	if l.good < l.size {
		// The tail of an append that never completed: the entry was
		// never acknowledged, so the batch it plans or commits runs again.
		err = f.Truncate(l.good)
		if err == nil {
			err = f.Sync()
		}
	}
	if err == nil {
		_, err = f.Seek(l.good, 0)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("%w: %s: %w", ErrCheckpoint, path, err)
	}
	l.f, l.size = f, l.good
	return nil
}

// rewrite replaces the log's file with head and its entries, atomically.
func (l *batchLog) rewrite(head checkpointMeta) error {
	head.Format = checkpointFormat
	b := appendLine(nil, logEntry{Checkpoint: &head})
	for _, e := range l.ents {
		b = appendLine(b, e)
	}
	if err := writeAtomic(filepath.Join(l.dir, batchLogName), b); err != nil {
		return err
	}
	l.head, l.good, l.size = &head, int64(len(b)), int64(len(b))
	return nil
}

// parseBatchLog parses the lines of a batch log and checks their order. It
// returns the header, if any, the entries and the length of the intact
// prefix of raw: a last line that is incomplete or fails its checksum is
// torn, not damage.
func parseBatchLog(raw []byte) (head *checkpointMeta, ents []logEntry, good int, err error) {
	for line := 1; good < len(raw); line++ {
		end := bytes.IndexByte(raw[good:], '\n')
		if end < 0 {
			return head, ents, good, nil // torn: the append stopped before its newline
		}
		e, lerr := parseLogLine(raw[good : good+end])
		switch {
		case lerr != nil && good+end+1 == len(raw) && errors.Is(lerr, errTorn):
			return head, ents, good, nil
		case lerr != nil:
			return nil, nil, 0, fmt.Errorf("line %d: %w", line, lerr)
		case e.Checkpoint != nil && line > 1:
			return nil, nil, 0, fmt.Errorf("line %d: a checkpoint header after the first line", line)
		case e.Checkpoint != nil:
			head = e.Checkpoint
		default:
			if err := checkNext(ents, e); err != nil {
				return nil, nil, 0, fmt.Errorf("line %d: %w", line, err)
			}
			ents = append(ents, e)
		}
		good += end + 1
	}
	return head, ents, good, nil
}

// errTorn marks a line whose bytes are not what was written: the remains of
// an interrupted append when it is the last line.
var errTorn = errors.New("checksum mismatch")

// parseLogLine parses "<crc> <json>".
func parseLogLine(line []byte) (logEntry, error) {
	var e logEntry
	sum, body, ok := bytes.Cut(line, []byte(" "))
	want, err := strconv.ParseUint(string(sum), 16, 32)
	if !ok || len(sum) != 8 || err != nil || uint32(want) != crc32.Checksum(body, castagnoli) {
		return e, errTorn
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, err
	}
	set := 0
	for _, isSet := range []bool{e.Offsets != nil, e.Commit != nil, e.Checkpoint != nil} {
		if isSet {
			set++
		}
	}
	switch o := e.Offsets; {
	case set != 1:
		return e, errors.New("want one of offsets, commit and checkpoint")
	case o != nil && (o.BatchID < 0 || o.Start == nil || o.End == nil):
		return e, errors.New("offsets entry without a batch id or offsets")
	case e.Commit != nil && *e.Commit < 0:
		return e, errors.New("negative batch id")
	}
	return e, nil
}

// checkNext checks that e may follow ents: batch N is planned after batch
// N-1 committed, and a batch commits after it was planned, once.
func checkNext(ents []logEntry, e logEntry) error {
	planned, committed := int64(-1), int64(-1)
	if n := len(ents); n > 0 {
		for i := n - 1; i >= 0 && (planned < 0 || committed < 0); i-- {
			if ents[i].Offsets != nil && planned < 0 {
				planned = ents[i].Offsets.BatchID
			}
			if ents[i].Commit != nil && committed < 0 {
				committed = *ents[i].Commit
			}
		}
	}
	id := e.batchID()
	switch {
	case e.Offsets != nil && len(ents) > 0 && (id != planned+1 || committed != planned):
		return fmt.Errorf("batch %d planned after batch %d, the last committed being %d", id, planned, committed)
	case e.Commit != nil && id != planned:
		return fmt.Errorf("batch %d committed, the last planned being %d", id, planned)
	case e.Commit != nil && id == committed:
		return fmt.Errorf("batch %d committed twice", id)
	}
	return nil
}

// appendLine formats e as a log line.
func appendLine(b []byte, e logEntry) []byte {
	body, _ := json.Marshal(e)
	b = fmt.Appendf(b, "%08x ", crc32.Checksum(body, castagnoli))
	return append(append(b, body...), '\n')
}

// append writes es, in order, with one write and one sync.
func (l *batchLog) append(es ...logEntry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	// es go into l.ents at once, each checked against those before it, and
	// come out again unless written.
	n := len(l.ents)
	l.ents = append(l.ents, es...)
	var lines []byte
	for i, e := range es {
		if err := checkNext(l.ents[:n+i], e); err != nil {
			l.ents = l.ents[:n]
			return fmt.Errorf("%w %s: %w", ErrCheckpoint, l.dir, err)
		}
		lines = appendLine(lines, e)
	}
	if _, err := l.f.Write(lines); err != nil {
		l.ents = l.ents[:n]
		return fmt.Errorf("%w: writing %s: %w", ErrCheckpoint, l.f.Name(), err)
	}
	if err := l.f.Sync(); err != nil {
		l.ents = l.ents[:n]
		return fmt.Errorf("%w: syncing %s: %w", ErrCheckpoint, l.f.Name(), err)
	}
	if len(l.ents) >= 2*compactAfter {
		return l.compact()
	}
	return nil
}

// compact rewrites the log with the entries of the last retainBatches
// batches.
func (l *batchLog) compact() error {
	last := l.ents[len(l.ents)-1].batchID()
	keep := l.ents
	for len(keep) > 0 && keep[0].batchID() <= last-retainBatches {
		keep = keep[1:]
	}
	old := l.ents
	l.ents = append([]logEntry(nil), keep...)
	if err := l.rewrite(*l.head); err != nil {
		l.ents = old
		return err
	}
	f, err := os.OpenFile(filepath.Join(l.dir, batchLogName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	l.f.Close()
	l.f = f
	return nil
}

// close closes the log's file, if open.
func (l *batchLog) close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}
