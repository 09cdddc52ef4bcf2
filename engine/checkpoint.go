package engine

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/gostream/gostream/kafkasrc"
)

// The checkpoint directory of a query, like Spark's:
//
//	metadata      the query's identity: id, name, plan fingerprint, shuffle partitions
//	offsets/N     "v1" line + JSON: batch N's start and end offsets, written BEFORE it runs
//	commits/N     "v1" line + JSON: written after batch N's state and sink output are durable
//	state/        the Pebble state store, versioned by batch id
//
// Every file is written to a temporary name, synced and renamed, so a crash
// leaves either the old or the new file, never a torn one.
type checkpoint struct {
	dir  string
	meta checkpointMeta
}

type checkpointMeta struct {
	Format            int    `json:"format"`
	ID                string `json:"id"`
	Name              string `json:"name"`
	Fingerprint       string `json:"planFingerprint"`
	ShufflePartitions int    `json:"shufflePartitions"`
}

// offsetEntry is one offsets-log record.
type offsetEntry struct {
	BatchID     int64            `json:"batchId"`
	TimestampMs int64            `json:"batchTimestampMs"`
	Start       kafkasrc.Offsets `json:"start"`
	End         kafkasrc.Offsets `json:"end"`
}

const (
	checkpointFormat = 1
	logHeader        = "v1\n"
	retainBatches    = 100 // log entries kept, like Spark's minBatchesToRetain
)

func damaged(dir, what string, err error) error {
	return fmt.Errorf("%w %s is damaged: %s: %v (nothing was changed; restore it from a backup or start the query with a new checkpoint directory)", ErrCheckpoint, dir, what, err)
}

// openCheckpoint opens dir, creating it for a new query. An existing
// checkpoint must belong to the same query (name and plan fingerprint).
func openCheckpoint(dir, name, fingerprint string, shufflePartitions int) (*checkpoint, error) {
	c := &checkpoint{dir: dir}
	raw, err := os.ReadFile(filepath.Join(dir, "metadata"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			return nil, fmt.Errorf("%w %s is not empty and has no metadata file: it is not a gostream checkpoint (use an empty or new directory)", ErrCheckpoint, dir)
		}
		return c, c.create(name, fingerprint, shufflePartitions)
	case err != nil:
		return nil, fmt.Errorf("%w %s: %w", ErrCheckpoint, dir, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.meta); err != nil {
		return nil, damaged(dir, "metadata", err)
	}
	switch {
	case c.meta.Format != checkpointFormat:
		return nil, fmt.Errorf("%w %s has format %d; this gostream reads format %d", ErrCheckpoint, dir, c.meta.Format, checkpointFormat)
	case c.meta.ShufflePartitions < 1 || c.meta.ID == "":
		return nil, damaged(dir, "metadata", errors.New("missing id or shuffle partitions"))
	case c.meta.Name != name || c.meta.Fingerprint != fingerprint:
		return nil, fmt.Errorf("%w %s belongs to a different query (%q, plan %.12s; this is %q, plan %.12s): use a new checkpoint directory for a changed query", ErrCheckpoint, dir, c.meta.Name, c.meta.Fingerprint, name, fingerprint)
	}
	return c, nil
}

func (c *checkpoint) create(name, fingerprint string, p int) error {
	for _, sub := range []string{"offsets", "commits"} {
		if err := os.MkdirAll(filepath.Join(c.dir, sub), 0o755); err != nil {
			return fmt.Errorf("%w: %w (check the path is writable)", ErrCheckpoint, err)
		}
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	c.meta = checkpointMeta{Format: checkpointFormat, ID: hex.EncodeToString(id), Name: name, Fingerprint: fingerprint, ShufflePartitions: p}
	b, _ := json.MarshalIndent(c.meta, "", "  ")
	return writeAtomic(filepath.Join(c.dir, "metadata"), b)
}

// writeAtomic writes data to path so that a crash leaves the old file or the
// new one.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("%w: writing %s: %w", ErrCheckpoint, path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	defer d.Close()
	return d.Sync()
}

// batches lists the batch ids in a log directory, ascending.
func (c *checkpoint) batches(log string) ([]int64, error) {
	entries, err := os.ReadDir(filepath.Join(c.dir, log))
	if err != nil {
		return nil, damaged(c.dir, log, err)
	}
	var ids []int64
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // a temporary file left by a crash
		}
		id, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || id < 0 {
			return nil, damaged(c.dir, log, fmt.Errorf("unexpected file %q", e.Name()))
		}
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

func (c *checkpoint) writeOffsets(e offsetEntry) error {
	b, _ := json.Marshal(e)
	return writeAtomic(filepath.Join(c.dir, "offsets", strconv.FormatInt(e.BatchID, 10)), append([]byte(logHeader), b...))
}

func (c *checkpoint) readOffsets(id int64) (offsetEntry, error) {
	var e offsetEntry
	name := filepath.Join("offsets", strconv.FormatInt(id, 10))
	raw, err := os.ReadFile(filepath.Join(c.dir, name))
	if err != nil {
		return e, damaged(c.dir, name, err)
	}
	body, ok := bytes.CutPrefix(raw, []byte(logHeader))
	if !ok {
		return e, damaged(c.dir, name, errors.New(`missing "v1" header`))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, damaged(c.dir, name, err)
	}
	if e.BatchID != id || e.End == nil || e.Start == nil {
		return e, damaged(c.dir, name, errors.New("batch id or offsets missing"))
	}
	return e, nil
}

func (c *checkpoint) writeCommit(id int64) error {
	path := filepath.Join(c.dir, "commits", strconv.FormatInt(id, 10))
	if err := writeAtomic(path, []byte(logHeader+`{"nextBatchWatermarkMs":0}`)); err != nil {
		return err
	}
	return c.prune(id)
}

// prune drops log entries older than retainBatches.
func (c *checkpoint) prune(id int64) error {
	old := id - retainBatches
	if old < 0 {
		return nil
	}
	for _, log := range []string{"offsets", "commits"} {
		err := os.Remove(filepath.Join(c.dir, log, strconv.FormatInt(old, 10)))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %w", ErrCheckpoint, err)
		}
	}
	return nil
}

// recovery is what a restarted query must do.
type recovery struct {
	lastCommitted int64        // -1: none
	rerun         *offsetEntry // a planned batch that never committed
	end           kafkasrc.Offsets
}

// recover reads the logs: the last committed batch, its end offsets, and
// the batch to re-run, if the last planned batch never committed.
func (c *checkpoint) recover() (recovery, error) {
	r := recovery{lastCommitted: -1}
	offs, err := c.batches("offsets")
	if err != nil {
		return r, err
	}
	commits, err := c.batches("commits")
	if err != nil {
		return r, err
	}
	if len(commits) > 0 {
		r.lastCommitted = commits[len(commits)-1]
	}
	if len(offs) == 0 {
		if len(commits) > 0 {
			return r, damaged(c.dir, "offsets", errors.New("commit log without offsets log"))
		}
		return r, nil
	}
	last := offs[len(offs)-1]
	switch {
	case last == r.lastCommitted:
		e, err := c.readOffsets(last)
		if err != nil {
			return r, err
		}
		r.end = e.End
	case last == r.lastCommitted+1:
		e, err := c.readOffsets(last)
		if err != nil {
			return r, err
		}
		r.rerun = &e
		if r.lastCommitted >= 0 {
			prev, err := c.readOffsets(r.lastCommitted)
			if err != nil {
				return r, err
			}
			r.end = prev.End
		}
	default:
		return r, damaged(c.dir, "logs", fmt.Errorf("last planned batch %d but last committed batch %d", last, r.lastCommitted))
	}
	return r, nil
}
