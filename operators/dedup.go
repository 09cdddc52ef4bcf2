package operators

import (
	"encoding/binary"
	"fmt"

	"github.com/gostream/gostream/proto/planpb"
)

// Dedup is a compiled dropDuplicates: the narrow chain below it and the
// columns of its key. It is safe for concurrent use; the per-task state
// lives in the DedupPartials it creates.
type Dedup struct {
	input *Narrow
	keys  []int             // key columns' indexes in the input schema
	types []planpb.DataType // the input schema's column types
}

// CompileDropDuplicates compiles a dropDuplicates node and the chain below
// it. Its columns are matched case-insensitively; none means all columns.
func CompileDropDuplicates(d *planpb.DropDuplicates) (*Dedup, error) {
	input, err := CompileNarrow(d.GetInput())
	if err != nil {
		return nil, err
	}
	x := &Dedup{input: input}
	schema := input.Schema()
	for _, f := range schema {
		switch f.Type {
		case planpb.DataType_ARRAY_STRING, planpb.DataType_HEADERS, planpb.DataType_STRUCT:
			return nil, fmt.Errorf("%w: dropDuplicates over a %s column (%q) is not supported yet; select or cast the columns it should keep first", ErrType, TypeName(f.Type), f.Name)
		}
		x.types = append(x.types, f.Type)
	}
	for _, c := range d.GetColumns() {
		i, err := schema.Index(c)
		if err != nil {
			return nil, fmt.Errorf("dropDuplicates: %w", err)
		}
		x.keys = append(x.keys, i)
	}
	if len(x.keys) == 0 {
		for i := range schema {
			x.keys = append(x.keys, i)
		}
	}
	return x, nil
}

// Input is the narrow chain feeding the dropDuplicates.
func (x *Dedup) Input() *Narrow { return x.input }

// Schema is the output schema: the input's.
func (x *Dedup) Schema() Schema { return x.input.Schema() }

// DedupPartial keeps the first row of each key one map task sees and
// encodes it into the exchange bucket of the key's state partition. Not
// safe for concurrent use.
type DedupPartial struct {
	x       *Dedup
	ex      *Exchange
	seen    map[string]struct{}
	vals    []Value
	key     []byte
	buckets [][]byte
}

// NewPartial returns a map-side deduplicator writing into ex's buckets.
func (x *Dedup) NewPartial(ex *Exchange) *DedupPartial {
	return &DedupPartial{x: x, ex: ex, seen: map[string]struct{}{}, vals: make([]Value, len(x.keys)), buckets: make([][]byte, ex.Partitions())}
}

// Add keeps row if its key is new to the task. A bucket entry is the
// uvarint length of the key, the key, the uvarint length of the row and
// the row, both encoded as group keys are (null equals null).
func (p *DedupPartial) Add(row Row) error {
	for i, k := range p.x.keys {
		p.vals[i] = row[k]
	}
	p.key = encodeKey(p.key[:0], p.vals)
	if _, ok := p.seen[string(p.key)]; ok {
		return nil
	}
	p.seen[string(p.key)] = struct{}{}
	enc := encodeKey(nil, row)
	b := p.buckets[p.ex.Partition(p.key)]
	b = binary.AppendUvarint(b, uint64(len(p.key)))
	b = append(b, p.key...)
	b = binary.AppendUvarint(b, uint64(len(enc)))
	p.buckets[p.ex.Partition(p.key)] = append(b, enc...)
	return nil
}

// Buckets returns the exchange buckets, one per state partition, in the
// order their rows were added.
func (p *DedupPartial) Buckets() [][]byte { return p.buckets }

// EachEntry calls fn with each key and encoded row of bucket, in order.
func EachEntry(bucket []byte, fn func(key, row []byte) error) error {
	for len(bucket) > 0 {
		var fields [2][]byte
		for i := range fields {
			l, n := binary.Uvarint(bucket)
			if n <= 0 || uint64(len(bucket)-n) < l {
				return fmt.Errorf("%w: bad length in dropDuplicates exchange bucket", ErrCorrupt)
			}
			fields[i], bucket = bucket[n:n+int(l)], bucket[n+int(l):]
		}
		if err := fn(fields[0], fields[1]); err != nil {
			return err
		}
	}
	return nil
}

// DecodeRow decodes a row of a bucket entry into row (len(Schema())).
// Strings in the row reference enc.
func (x *Dedup) DecodeRow(row Row, enc []byte) error {
	return decodeKey(row, enc, x.types)
}
