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
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gostream/gostream/kafkasrc"
)

// The checkpoint directory of a query:
//
//	metadata      the query's identity: id, name, plan fingerprint, shuffle partitions
//	batches       the offsets and commit logs (see batchLog): batch N's start and end
//	              offsets, written BEFORE it runs, then its commit, written after its
//	              state and sink output are durable
//	state/        the Pebble state store, versioned by batch id
//
// Format 1 kept the logs as Spark does, one file per entry in offsets/ and
// commits/; opening such a checkpoint converts it. The metadata file is
// written to a temporary name, synced and renamed, so a crash leaves either
// the old or the new file, never a torn one.
type checkpoint struct {
	dir  string
	meta checkpointMeta
	log  *batchLog
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
	checkpointFormat = 2
	logHeader        = "v1\n" // of format 1's log files
	retainBatches    = 100    // batches kept in the logs, like Spark's minBatchesToRetain
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
	case c.meta.Format != checkpointFormat && c.meta.Format != 1:
		return nil, fmt.Errorf("%w %s has format %d; this gostream reads formats 1 and %d", ErrCheckpoint, dir, c.meta.Format, checkpointFormat)
	case c.meta.ShufflePartitions < 1 || c.meta.ID == "":
		return nil, damaged(dir, "metadata", errors.New("missing id or shuffle partitions"))
	case c.meta.Name != name || c.meta.Fingerprint != fingerprint:
		return nil, fmt.Errorf("%w %s belongs to a different query (%q, plan %.12s; this is %q, plan %.12s): use a new checkpoint directory for a changed query", ErrCheckpoint, dir, c.meta.Name, c.meta.Fingerprint, name, fingerprint)
	case c.meta.Format == 1:
		if err := c.convert(); err != nil {
			return nil, err
		}
	}
	if c.log, err = openBatchLog(dir, false); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *checkpoint) create(name, fingerprint string, p int) (err error) {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("%w: %w (check the path is writable)", ErrCheckpoint, err)
	}
	if c.log, err = openBatchLog(c.dir, true); err != nil {
		return err
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	c.meta = checkpointMeta{Format: checkpointFormat, ID: hex.EncodeToString(id), Name: name, Fingerprint: fingerprint, ShufflePartitions: p}
	if err := c.writeMeta(); err != nil {
		c.log.close()
		return err
	}
	return nil
}

func (c *checkpoint) writeMeta() error {
	b, _ := json.MarshalIndent(c.meta, "", "  ")
	return writeAtomic(filepath.Join(c.dir, "metadata"), b)
}

// convert turns a format 1 checkpoint into the current format: it writes
// the entries of its offsets/ and commits/ files as the batch log, then the
// metadata, then removes the old logs. A crash before the metadata is
// written leaves a format 1 checkpoint, converted again on the next open.
func (c *checkpoint) convert() error {
	offs, err := c.batches("offsets")
	if err != nil {
		return err
	}
	commits, err := c.batches("commits")
	if err != nil {
		return err
	}
	planned := map[int64]bool{}
	for _, id := range offs {
		planned[id] = true
	}
	for _, id := range commits {
		if !planned[id] {
			return damaged(c.dir, "commits", fmt.Errorf("batch %d committed but not in the offsets log", id))
		}
	}
	var ents []logEntry
	for _, id := range offs {
		e, err := c.readOffsets(id)
		if err != nil {
			return err
		}
		ents = append(ents, logEntry{Offsets: &e})
		if slices.Contains(commits, id) {
			ents = append(ents, logEntry{Commit: &id})
		}
	}
	for i := range ents {
		if err := checkNext(ents[:i], ents[i]); err != nil {
			return damaged(c.dir, "logs", err)
		}
	}
	if err := writeBatchLog(c.dir, ents); err != nil {
		return err
	}
	c.meta.Format = checkpointFormat
	if err := c.writeMeta(); err != nil {
		return err
	}
	for _, log := range []string{"offsets", "commits"} {
		if err := os.RemoveAll(filepath.Join(c.dir, log)); err != nil {
			return fmt.Errorf("%w: %w", ErrCheckpoint, err)
		}
	}
	return nil
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

func (c *checkpoint) writeOffsets(e offsetEntry) error { return c.log.append(logEntry{Offsets: &e}) }

// readOffsets reads offsets/N of a format 1 checkpoint.
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

func (c *checkpoint) writeCommit(id int64) error { return c.log.append(logEntry{Commit: &id}) }

// writeCommitAndOffsets writes "commit id" and the next batch's offsets
// entry e with one sync.
func (c *checkpoint) writeCommitAndOffsets(id int64, e offsetEntry) error {
	return c.log.append(logEntry{Commit: &id}, logEntry{Offsets: &e})
}

func (c *checkpoint) close() error { return c.log.close() }

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
	ents := c.log.ents
	if len(ents) == 0 {
		return r, nil
	}
	var planned []*offsetEntry // the last two planned batches, oldest first
	for _, e := range ents {
		if e.Offsets != nil {
			planned = append(planned[max(0, len(planned)-1):], e.Offsets)
		} else {
			r.lastCommitted = *e.Commit
		}
	}
	last := planned[len(planned)-1]
	switch {
	case last.BatchID == r.lastCommitted:
		r.end = last.End
	case len(planned) > 1:
		r.rerun, r.end = last, planned[0].End
	default:
		r.rerun = last
	}
	return r, nil
}
