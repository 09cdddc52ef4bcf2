package state

import (
	"encoding/binary"
	"errors"
)

// A delta is a list of writes: a changelog record (the writes of one
// version, see the package doc) or the keys a fold writes back. It is
// deltaFormat followed, for each write in order, by an op byte, the uvarint
// key length and the key, and for deltaPut the uvarint value length and the
// value.
const deltaFormat byte = 1

// Delta ops.
const (
	deltaDelete byte = 0
	deltaPut    byte = 1
)

// errBadDelta is wrapped into ErrCorrupt by the caller, who knows the
// directory, partition and version.
var errBadDelta = errors.New("changelog record is malformed")

// newDelta starts an empty delta in dst.
func newDelta(dst []byte) []byte { return append(dst[:0], deltaFormat) }

// appendDeltaWrite appends a put of value under key, or its deletion.
func appendDeltaWrite(dst, key, value []byte, del bool) []byte {
	if del {
		dst = append(dst, deltaDelete)
		dst = binary.AppendUvarint(dst, uint64(len(key)))
		return append(dst, key...)
	}
	dst = append(dst, deltaPut)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

// decodeDelta calls fn for each write of d in order (value is nil for a
// deletion). The slices alias d. It returns errBadDelta, after calling fn
// for the writes before the damage, if d is malformed.
func decodeDelta(d []byte, fn func(key, value []byte, del bool) error) error {
	if len(d) == 0 || d[0] != deltaFormat {
		return errBadDelta
	}
	rest := d[1:]
	for len(rest) > 0 {
		op := rest[0]
		if op != deltaPut && op != deltaDelete {
			return errBadDelta
		}
		var key, value []byte
		var ok bool
		if key, rest, ok = cutBytes(rest[1:]); !ok {
			return errBadDelta
		}
		if op == deltaPut {
			if value, rest, ok = cutBytes(rest); !ok {
				return errBadDelta
			}
		}
		if err := fn(key, value, op == deltaDelete); err != nil {
			return err
		}
	}
	return nil
}

// cutBytes splits a uvarint-length-prefixed byte string off the front of b.
func cutBytes(b []byte) (s, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	end := w + int(n)
	return b[w:end:end], b[end:], true
}
