package state

import "fmt"

// restorePoint is the state of a partition right after one commit: its
// version and key count.
type restorePoint struct {
	version int64
	keys    int64
}

// history is the version bookkeeping both implementations share. It does no
// I/O: the stores persist it and act on the version ranges it returns.
//
// points lists the states a partition can return to, oldest first; the last
// is the current committed state. Undo records exist for every point but the
// first: those of points[i] lead back to points[i-1]. version is the current
// version: the last point's, or higher after a Rollback to a version between
// commits.
type history struct {
	version int64
	points  []restorePoint
}

// newHistory is the history of a store that has never committed.
func newHistory() history {
	return history{version: NoVersion, points: []restorePoint{{version: NoVersion}}}
}

// keys is the committed key count.
func (h *history) keys() int64 { return h.points[len(h.points)-1].keys }

// checkCommit reports whether version may be committed next.
func (h *history) checkCommit(partition int, version int64) error {
	if version <= h.version {
		return fmt.Errorf("%w: partition %d is at version %d, cannot commit version %d; commit a higher version",
			ErrVersion, partition, h.version, version)
	}
	return nil
}

// commit records a commit of version leaving keys keys, keeping retain
// commits undoable. If older undo records are no longer needed, it returns
// the inclusive range of their versions with prune set.
func (h *history) commit(version, keys int64, retain int) (pruneFrom, pruneTo int64, prune bool) {
	h.version = version
	h.points = append(h.points, restorePoint{version: version, keys: keys})
	drop := len(h.points) - (retain + 1)
	if drop <= 0 {
		return 0, 0, false
	}
	pruneFrom, pruneTo = h.points[1].version, h.points[drop].version
	h.points = append(h.points[:0], h.points[drop:]...)
	return pruneFrom, pruneTo, true
}

// rollback moves the history back to version v. It returns the oldest
// version whose undo records must be applied (with all newer ones), with
// undo set, or undo unset when no commit lies above v.
func (h *history) rollback(partition int, v int64) (undoFrom int64, undo bool, err error) {
	if v > h.version || v < NoVersion {
		return 0, false, fmt.Errorf("%w: partition %d is at version %d, cannot roll back to version %d",
			ErrVersion, partition, h.version, v)
	}
	if v < h.points[0].version {
		return 0, false, fmt.Errorf("%w: partition %d can roll back to version %d at the oldest, not %d; raise Options.RetainVersions or restore the partition from a fresh checkpoint",
			ErrVersionGone, partition, h.points[0].version, v)
	}
	i := len(h.points) - 1
	for h.points[i].version > v {
		i--
	}
	h.version = v
	if i == len(h.points)-1 {
		return 0, false, nil
	}
	undoFrom = h.points[i+1].version
	h.points = h.points[:i+1]
	return undoFrom, true, nil
}
