package operators

import (
	"encoding/binary"
	"fmt"
)

// AppendRow appends row's encoding to b: per value its kind, then its
// payload (a varint, a double's bits, a length-prefixed string, or an
// array's or struct's count then its values). ReadRow decodes it; the
// encoding needs no schema.
func AppendRow(b []byte, row Row) []byte {
	b = binary.AppendUvarint(b, uint64(len(row)))
	for _, v := range row {
		b = appendTagged(b, v)
	}
	return b
}

func appendTagged(b []byte, v Value) []byte {
	b = append(b, byte(v.Kind))
	switch v.Kind {
	case KindNull:
		return b
	case KindArray, KindStruct:
		b = binary.AppendUvarint(b, uint64(len(v.A)))
		for _, e := range v.A {
			b = appendTagged(b, e)
		}
		return b
	}
	return appendValue(b, v)
}

// ReadRow decodes a row AppendRow encoded. The row's strings and binaries
// reference b. A malformed encoding is ErrCorrupt.
func ReadRow(b []byte) (Row, error) {
	vals, rest, err := readTaggedList(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after a row", ErrCorrupt, len(rest))
	}
	return Row(vals), nil
}

// maxRowDepth bounds the nesting of arrays and structs ReadRow decodes.
const maxRowDepth = 64

func readTaggedList(b []byte, depth int) ([]Value, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) { // each value takes a byte at least
		return nil, nil, fmt.Errorf("%w: bad value count", ErrCorrupt)
	}
	b = b[w:]
	vals := make([]Value, n)
	for i := range vals {
		if len(b) == 0 {
			return nil, nil, fmt.Errorf("%w: short row", ErrCorrupt)
		}
		k := Kind(b[0])
		b = b[1:]
		switch k {
		case KindNull:
		case KindArray, KindStruct:
			if depth >= maxRowDepth {
				return nil, nil, fmt.Errorf("%w: values nested deeper than %d", ErrCorrupt, maxRowDepth)
			}
			a, rest, err := readTaggedList(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			vals[i], b = Value{Kind: k, A: a}, rest
		case KindString, KindBinary, KindLong, KindDouble, KindBool, KindTimestamp:
			v, rest, err := readValue(b, k)
			if err != nil {
				return nil, nil, err
			}
			vals[i], b = v, rest
		default:
			return nil, nil, fmt.Errorf("%w: unknown value kind %d", ErrCorrupt, k)
		}
	}
	return vals, b, nil
}
