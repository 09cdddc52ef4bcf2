package state

import (
	"encoding/binary"
	"errors"
)

// Key tags, after the 4-byte partition prefix (see the package doc).
const (
	tagData byte = 'd'
	tagMeta byte = 'm'
	tagUndo byte = 'u'
	tagLog  byte = 'l'
)

// prefixLen is the length of partition | tag; undoPrefixLen adds the
// version, and so is the length of a log key.
const (
	prefixLen     = 5
	undoPrefixLen = prefixLen + 8
	logKeyLen     = undoPrefixLen
)

// Undo record values start with one of these flags; undoPresent is followed
// by the previous value.
const (
	undoAbsent  byte = 0
	undoPresent byte = 1
)

// markerKey marks a Pebble database as gostream state. Its partition bytes
// are 0xffffffff, above MaxPartition, so no partition's range contains it.
var markerKey = []byte("\xff\xff\xff\xffgostream-state")

// labelKey holds Options.Label, next to the marker.
var labelKey = []byte("\xff\xff\xff\xffgostream-label")

// markerValue names the layout; a different value is a layout this build
// cannot read.
const markerValue = "layout 1"

// metaFormat is the first byte of a metadata value.
const metaFormat byte = 1

// metaHeaderLen is format | version | number of restore points;
// metaPointLen is one restore point: version | keys.
const (
	metaHeaderLen = 1 + 8 + 4
	metaPointLen  = 8 + 8
)

func appendPrefix(dst []byte, partition uint32, tag byte) []byte {
	return append(binary.BigEndian.AppendUint32(dst, partition), tag)
}

func appendDataKey(dst []byte, partition uint32, key []byte) []byte {
	return append(appendPrefix(dst, partition, tagData), key...)
}

// appendUndoKey encodes version as big-endian uint64 so that undo records
// sort by version; only versions >= 0 have undo records.
func appendUndoKey(dst []byte, partition uint32, version int64, key []byte) []byte {
	dst = binary.BigEndian.AppendUint64(appendPrefix(dst, partition, tagUndo), uint64(version))
	return append(dst, key...)
}

// appendLogKey encodes the key of version's changelog record; like undo
// records, log records sort by version.
func appendLogKey(dst []byte, partition uint32, version int64) []byte {
	return binary.BigEndian.AppendUint64(appendPrefix(dst, partition, tagLog), uint64(version))
}

// logKeyVersion decodes the version of a log key of logKeyLen bytes.
func logKeyVersion(k []byte) int64 { return int64(binary.BigEndian.Uint64(k[prefixLen:])) }

// appendMeta encodes h as a metadata value.
func appendMeta(dst []byte, h *history) []byte {
	dst = append(dst, metaFormat)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.version))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(h.points)))
	for _, p := range h.points {
		dst = binary.BigEndian.AppendUint64(dst, uint64(p.version))
		dst = binary.BigEndian.AppendUint64(dst, uint64(p.keys))
	}
	return dst
}

// errBadMeta is wrapped into ErrCorrupt by the caller, who knows the
// directory and partition.
var errBadMeta = errors.New("metadata record is malformed")

// decodeMeta decodes a metadata value and checks that it is consistent.
func decodeMeta(b []byte) (history, error) {
	if len(b) < metaHeaderLen || b[0] != metaFormat {
		return history{}, errBadMeta
	}
	n := binary.BigEndian.Uint32(b[9:])
	if n == 0 || uint64(len(b)) != metaHeaderLen+uint64(n)*metaPointLen {
		return history{}, errBadMeta
	}
	h := history{version: int64(binary.BigEndian.Uint64(b[1:])), points: make([]restorePoint, n)}
	rest := b[metaHeaderLen:]
	for i := range h.points {
		h.points[i] = restorePoint{
			version: int64(binary.BigEndian.Uint64(rest)),
			keys:    int64(binary.BigEndian.Uint64(rest[8:])),
		}
		rest = rest[metaPointLen:]
		if h.points[i].version < NoVersion || h.points[i].keys < 0 || (i > 0 && h.points[i].version <= h.points[i-1].version) {
			return history{}, errBadMeta
		}
	}
	if h.version < h.points[n-1].version {
		return history{}, errBadMeta
	}
	return h, nil
}
