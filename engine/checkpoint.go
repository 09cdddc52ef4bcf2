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

	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/internal/fsutil"
	"github.com/gostream/gostream/proto/planpb"
)

// The checkpoint directory of a query:
//
//	metadata      the query's identity: id, name, plan (fingerprint and steps),
//	              shuffle partitions
//	batches       the offsets and commit logs (see batchLog): batch N's start and end
//	              offsets, written BEFORE it runs, then its commit, written after its
//	              state and sink output are durable
//	state/        the Pebble state store, versioned by batch id
//
// Each part names the checkpoint it belongs to: the batch log starts with a
// copy of the metadata, and the state store is labeled with it (format 3),
// so a part swapped in from another checkpoint, or metadata edited by hand,
// is refused instead of giving wrong counts. Format 2 kept no such copies,
// format 1 kept the logs as Spark does, one file per entry in offsets/ and
// commits/; both are read, and written in format 3 once checked.
//
// Opening a checkpoint locks its directory (lockDir), then reads and checks
// every part before it writes anything: a checkpoint refused as damaged, as
// another query's or as in use is left exactly as it was. Only then does
// resume cut off the torn last line a crash may leave in the batch log. The
// metadata file is written to a temporary name, synced and renamed, so a
// crash leaves either the old or the new file, never a torn one.
type checkpoint struct {
	dir  string
	meta checkpointMeta
	log  *batchLog
	lock *dirLock
	// upgrade is set for a checkpoint of an older format: resume writes its
	// batch log in the current format, and finishUpgrade its metadata.
	upgrade bool
}

// checkpointMeta is the metadata file, and the copy of it heading the batch
// log and labeling the state store.
type checkpointMeta struct {
	Format            int      `json:"format"`
	ID                string   `json:"id"`
	Name              string   `json:"name"`
	Fingerprint       string   `json:"planFingerprint"`
	Plan              []string `json:"plan,omitempty"` // describePlan, from format 3
	ShufflePartitions int      `json:"shufflePartitions"`
}

// offsetEntry is one offsets-log record.
type offsetEntry = loop.OffsetsEntry

const (
	checkpointFormat = 3
	logHeader        = "v1\n" // of format 1's log files
	retainBatches    = 100    // batches kept in the logs, like Spark's minBatchesToRetain
	metadataName     = "metadata"
	stateDirName     = "state"
	statePart        = stateDirName + "/" // as errors name it
)

// refusal ends the message of an error that refuses a checkpoint.
const refusal = "nothing was changed; restore it from a backup or start the query with a new checkpoint directory"

func damaged(dir, what string, err error) error {
	return fmt.Errorf("%w %s is damaged: %s: %v (%s)", ErrCheckpoint, dir, what, err, refusal)
}

func inUse(dir string, pid int) error {
	by := "another process"
	switch {
	case pid == os.Getpid():
		by = fmt.Sprintf("pid %d (this process: another query)", pid)
	case pid > 0:
		by = fmt.Sprintf("pid %d", pid)
	}
	return fmt.Errorf("%w %s is in use by %s; stop that query first, or give this one another checkpoint directory", ErrCheckpoint, dir, by)
}

// openCheckpoint opens the checkpoint of query q in dir, creating it for a
// new query with shufflePartitions partitions. It locks dir, and checks
// that every part is intact and belongs to the same query (name and plan);
// it writes nothing to an existing checkpoint (see resume).
func openCheckpoint(dir string, q *planpb.Query, shufflePartitions int) (*checkpoint, error) {
	want := checkpointMeta{Format: checkpointFormat, Name: q.Name, Fingerprint: fingerprint(q.Plan),
		Plan: describePlan(q.Plan), ShufflePartitions: shufflePartitions}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w (check the path is writable)", ErrCheckpoint, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	c := &checkpoint{dir: dir, lock: lock}
	if err := c.open(want); err != nil {
		lock.unlock()
		return nil, err
	}
	return c, nil
}

func (c *checkpoint) open(want checkpointMeta) error {
	raw, err := os.ReadFile(filepath.Join(c.dir, metadataName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := c.checkUnused(); err != nil {
			return err
		}
		return c.create(want)
	case err != nil:
		return fmt.Errorf("%w %s: %w", ErrCheckpoint, c.dir, err)
	}
	if c.meta, err = parseMeta(c.dir, raw); err != nil {
		return err
	}
	if err := c.sameQuery(want); err != nil {
		return err
	}
	c.upgrade = c.meta.Format < checkpointFormat
	if c.upgrade {
		c.meta.Plan = want.Plan // the same plan: its fingerprint matched
	}
	if c.meta.Format == 1 {
		ents, err := c.readFormat1()
		if err != nil {
			return err
		}
		c.log = &batchLog{dir: c.dir, ents: ents}
		return nil
	}
	if c.log, err = readBatchLog(c.dir); err != nil {
		return err
	}
	switch head := c.log.head; {
	case head != nil:
		return c.sameCheckpoint(batchLogName, *head)
	case c.meta.Format == checkpointFormat:
		return damaged(c.dir, batchLogName, errors.New("its first line does not name the checkpoint it belongs to"))
	}
	return nil
}

// parseMeta parses a metadata file.
func parseMeta(dir string, raw []byte) (checkpointMeta, error) {
	var m checkpointMeta
	var f struct{ Format int }
	if err := json.Unmarshal(raw, &f); err != nil {
		return m, damaged(dir, metadataName, err)
	}
	if f.Format < 1 || f.Format > checkpointFormat {
		return m, fmt.Errorf("%w %s has format %d; this gostream reads formats 1 to %d (use the gostream that wrote it, or a new checkpoint directory)", ErrCheckpoint, dir, f.Format, checkpointFormat)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, damaged(dir, metadataName, err)
	}
	if m.ShufflePartitions < 1 || m.ID == "" {
		return m, damaged(dir, metadataName, errors.New("missing id or shuffle partitions"))
	}
	return m, nil
}

// checkUnused checks that dir, which has no metadata, may become a new
// checkpoint: it is empty, or holds what a creation interrupted before its
// metadata was written leaves, a batch log without batches.
func (c *checkpoint) checkUnused() error {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("%w %s: %w", ErrCheckpoint, c.dir, err)
	}
	for _, e := range entries {
		switch name := e.Name(); {
		case strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp"):
			// a temporary file of writeAtomic, left by a crash
		case name == batchLogName:
			if l, err := readBatchLog(c.dir); err != nil || len(l.ents) > 0 {
				return damaged(c.dir, metadataName, errors.New("missing, while the batch log holds batches"))
			}
		case name == stateDirName:
			return damaged(c.dir, metadataName, errors.New("missing, while state/ exists"))
		default:
			return fmt.Errorf("%w %s is not empty and has no metadata file: it is not a gostream checkpoint (use an empty or new directory)", ErrCheckpoint, c.dir)
		}
	}
	return nil
}

func (c *checkpoint) create(want checkpointMeta) error {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	c.meta = want
	c.meta.ID = hex.EncodeToString(id)
	// The batch log first: a crash before the metadata is written leaves a
	// directory checkUnused accepts.
	c.log = &batchLog{dir: c.dir}
	if err := c.log.rewrite(c.meta); err != nil {
		return err
	}
	return c.writeMeta()
}

func (c *checkpoint) writeMeta() error {
	b, _ := json.MarshalIndent(c.meta, "", "  ")
	return writeAtomic(filepath.Join(c.dir, metadataName), b)
}

// sameQuery checks that the checkpoint belongs to the query described by
// want, and says what differs when it does not.
func (c *checkpoint) sameQuery(want checkpointMeta) error {
	have := c.meta
	var diffs []string
	if have.Name != want.Name {
		diffs = append(diffs, fmt.Sprintf("it was written for query %q, this is query %q", have.Name, want.Name))
	}
	if have.Fingerprint != want.Fingerprint {
		diffs = append(diffs, planDifference(have, want))
	}
	if diffs == nil {
		return nil
	}
	return fmt.Errorf("%w %s belongs to a different query: %s; nothing was changed: start this query with a new checkpoint directory, or run the query that wrote it",
		ErrCheckpoint, c.dir, strings.Join(diffs, "; "))
}

// planDifference says in words how the plan of checkpoint have differs
// from the query's, want.
func planDifference(have, want checkpointMeta) string {
	if have.Plan == nil {
		return fmt.Sprintf("its plan (fingerprint %.12s, written by an older gostream that did not describe it) differs from this query's (%.12s)", have.Fingerprint, want.Fingerprint)
	}
	if len(have.Plan) != len(want.Plan) {
		return fmt.Sprintf("its plan is %q, this query's is %q", strings.Join(have.Plan, " | "), strings.Join(want.Plan, " | "))
	}
	var diffs []string
	for i := range have.Plan {
		if have.Plan[i] != want.Plan[i] {
			diffs = append(diffs, fmt.Sprintf("its plan has %q where this query has %q", have.Plan[i], want.Plan[i]))
		}
	}
	if diffs == nil {
		return fmt.Sprintf("its plan (%s) differs from this query's in an expression detail (fingerprints %.12s and %.12s)", strings.Join(have.Plan, " | "), have.Fingerprint, want.Fingerprint)
	}
	return strings.Join(diffs, ", ")
}

// sameCheckpoint checks that other, the copy of the metadata in part of
// the checkpoint, names the checkpoint of its metadata file, and says what
// each side says when it does not.
func (c *checkpoint) sameCheckpoint(part string, other checkpointMeta) error {
	m := c.meta
	var differ []string
	if other.ID != m.ID {
		differ = append(differ, "id")
	}
	if other.Name != m.Name {
		differ = append(differ, "query")
	}
	if other.Fingerprint != m.Fingerprint {
		differ = append(differ, "plan")
	}
	if other.ShufflePartitions != m.ShufflePartitions {
		differ = append(differ, "shuffle partitions")
	}
	if differ == nil {
		return nil
	}
	return fmt.Errorf("%w %s mixes parts of different checkpoints: %s was written for %s, its metadata is of %s (they differ in %s); %s",
		ErrCheckpoint, c.dir, part, other.describe(), m.describe(), strings.Join(differ, ", "), refusal)
}

// checkStateLabel checks the label of the checkpoint's state store: the
// metadata it was created with, or nil. A state store without one is
// accepted from a checkpoint written before labels (format 2), or if it
// holds nothing yet.
func (c *checkpoint) checkStateLabel(label []byte, empty bool) error {
	if label == nil {
		if c.meta.Format < checkpointFormat || empty {
			return nil
		}
		return damaged(c.dir, statePart, errors.New("it does not name the checkpoint it belongs to: it is not this checkpoint's"))
	}
	var other checkpointMeta
	if err := json.Unmarshal(label, &other); err != nil {
		return damaged(c.dir, statePart, fmt.Errorf("its label %q: %w", label, err))
	}
	return c.sameCheckpoint(statePart, other)
}

// label is what labels the checkpoint's state store (state.Options.Label).
func (c *checkpoint) label() []byte {
	m := c.meta
	m.Format = checkpointFormat
	b, _ := json.Marshal(m)
	return b
}

// describe names the checkpoint m for a user: its id, query, source and
// shuffle partitions.
func (m checkpointMeta) describe() string {
	source := "plan " + m.Fingerprint[:min(12, len(m.Fingerprint))]
	if len(m.Plan) > 0 {
		source = m.Plan[0]
	}
	return fmt.Sprintf("checkpoint %.8s of query %q (%s, %d shuffle partitions)", m.ID, m.Name, source, m.ShufflePartitions)
}

// readFormat1 reads the entries of the offsets/ and commits/ files of a
// format 1 checkpoint and checks them.
func (c *checkpoint) readFormat1() ([]logEntry, error) {
	offs, err := c.batches("offsets")
	if err != nil {
		return nil, err
	}
	commits, err := c.batches("commits")
	if err != nil {
		return nil, err
	}
	planned := map[int64]bool{}
	for _, id := range offs {
		planned[id] = true
	}
	for _, id := range commits {
		if !planned[id] {
			return nil, damaged(c.dir, "commits", fmt.Errorf("batch %d committed but not in the offsets log", id))
		}
	}
	var ents []logEntry
	for _, id := range offs {
		e, err := c.readOffsets(id)
		if err != nil {
			return nil, err
		}
		ents = append(ents, logEntry{Offsets: &e})
		if slices.Contains(commits, id) {
			ents = append(ents, logEntry{Commit: &id})
		}
	}
	for i := range ents {
		if err := checkNext(ents[:i], ents[i]); err != nil {
			return nil, damaged(c.dir, "logs", err)
		}
	}
	return ents, nil
}

// resume makes a checked checkpoint ready to log batches: it is the first
// write to an existing checkpoint. It writes the batch log of an older
// format in the current one (with its header), or cuts off the torn last
// line a crash in the middle of an append left, and opens the log.
func (c *checkpoint) resume() error {
	if c.upgrade {
		if err := c.log.rewrite(c.meta); err != nil {
			return err
		}
	}
	return c.log.open()
}

// finishUpgrade writes the metadata of a checkpoint of an older format in
// the current one, once its batch log and state store were, and removes
// format 1's logs. A crash before leaves the older format, upgraded again
// on the next start.
func (c *checkpoint) finishUpgrade() error {
	if !c.upgrade {
		return nil
	}
	format := c.meta.Format
	c.meta.Format = checkpointFormat
	if err := c.writeMeta(); err != nil {
		c.meta.Format = format
		return err
	}
	c.upgrade = false
	if format == 1 {
		for _, log := range []string{"offsets", "commits"} {
			if err := os.RemoveAll(filepath.Join(c.dir, log)); err != nil {
				return fmt.Errorf("%w: %w", ErrCheckpoint, err)
			}
		}
	}
	return nil
}

// writeAtomic writes data to path so that a crash leaves the old file or the
// new one.
func writeAtomic(path string, data []byte) error {
	if err := fsutil.WriteAtomic(path, data); err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	return nil
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

// close closes the batch log and unlocks the directory.
func (c *checkpoint) close() error {
	return errors.Join(c.log.close(), c.lock.unlock())
}

// recover reads the logs: the last committed batch, its end offsets, and
// the batch to re-run, if the last planned batch never committed.
func (c *checkpoint) recover() (loop.Recovery, error) {
	r := loop.Recovery{LastCommitted: -1}
	ents := c.log.ents
	if len(ents) == 0 {
		return r, nil
	}
	var planned []*offsetEntry // the last two planned batches, oldest first
	for _, e := range ents {
		if e.Offsets != nil {
			planned = append(planned[max(0, len(planned)-1):], e.Offsets)
		} else {
			r.LastCommitted = *e.Commit
		}
	}
	last := planned[len(planned)-1]
	switch {
	case last.BatchID == r.LastCommitted:
		r.End = last.End
	case len(planned) > 1:
		r.Rerun, r.End = last, planned[0].End
	default:
		r.Rerun = last
	}
	return r, nil
}
