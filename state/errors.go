package state

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these with the
// partition, version or directory involved; test with errors.Is.
var (
	// ErrVersion reports a Commit to a version not above Store.Version, or a
	// Rollback to a version above it.
	ErrVersion = errors.New("state: version out of order")
	// ErrVersionGone reports a Rollback to a version older than the retained
	// undo history (see Options.RetainVersions).
	ErrVersionGone = errors.New("state: version no longer retained")
	// ErrClosed reports a call on a closed Store or Provider.
	ErrClosed = errors.New("state: closed")
	// ErrFailed reports a call on a Store whose earlier Commit or Rollback
	// failed half-way; only reopening the Provider tells which version is
	// durable.
	ErrFailed = errors.New("state: store failed")
	// ErrPartition reports a partition number outside [0, MaxPartition].
	ErrPartition = errors.New("state: invalid partition")
	// ErrPartitionOpen reports opening a partition that is already open.
	ErrPartitionOpen = errors.New("state: partition already open")
	// ErrNotStateDir reports a directory that holds something other than
	// gostream state. The directory is left untouched.
	ErrNotStateDir = errors.New("state: not a gostream state directory")
	// ErrCorrupt reports a state directory whose contents are damaged.
	ErrCorrupt = errors.New("state: state directory is corrupt")
	// ErrNoSpace reports that the file system of the state directory is
	// full: the write that found it, and every later one, failed. Free
	// space and open the directory again.
	ErrNoSpace = errors.New("state: no space left on device")
	// ErrInvalidOptions reports an Options field out of range.
	ErrInvalidOptions = errors.New("state: invalid options")
)
