package operators

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/gostream/gostream/proto/planpb"
)

// Aggregation is a compiled groupBy/agg: the narrow chain below it, the
// group keys and the aggregate functions. It is safe for concurrent use; the
// per-task state lives in the HashAggs it creates.
type Aggregation struct {
	input    *Narrow
	node     *planpb.Aggregate
	aggs     []aggSpec
	keyTypes []planpb.DataType
	schema   Schema // group keys, then aggregates
	counts   bool   // every aggregate is a count
	// seeds are those of every partial's counter, so Absorb merges
	// counters of the same seeds.
	seeds counterSeeds
}

type aggSpec struct {
	fn     planpb.AggregateFunction
	star   bool            // count(*)
	in     planpb.DataType // argument type
	result planpb.DataType
}

// CompileAggregate compiles an aggregation node and the chain below it.
func CompileAggregate(a *planpb.Aggregate) (*Aggregation, error) {
	input, err := CompileNarrow(a.GetInput())
	if err != nil {
		return nil, err
	}
	g := &Aggregation{input: input, node: a, seeds: newCounterSeeds()}
	keys, keySchema, err := compileNamed(a.GetGroupBy(), input.Schema(), input.env())
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		switch k.Type() {
		case planpb.DataType_ARRAY_STRING, planpb.DataType_HEADERS, planpb.DataType_STRUCT:
			return nil, fmt.Errorf("%w: cannot group by %s column %q", ErrType, TypeName(k.Type()), keySchema[i].Name)
		}
		g.keyTypes = append(g.keyTypes, k.Type())
	}
	g.schema = append(g.schema, keySchema...)
	g.counts = true
	for _, ae := range a.GetAggregates() {
		g.counts = g.counts && ae.GetFunction() == planpb.AggregateFunction_COUNT
		spec := aggSpec{fn: ae.GetFunction(), star: ae.GetArg() == nil}
		if !spec.star {
			x, err := compileExpr(ae.GetArg(), input.Schema(), input.env())
			if err != nil {
				return nil, fmt.Errorf("aggregate %q: %w", ae.GetName(), err)
			}
			spec.in = x.Type()
		}
		if spec.result, err = aggResultType(spec); err != nil {
			return nil, fmt.Errorf("aggregate %q: %w", ae.GetName(), err)
		}
		g.aggs = append(g.aggs, spec)
		g.schema = append(g.schema, Field{Name: ae.GetName(), Type: spec.result, Nullable: spec.fn != planpb.AggregateFunction_COUNT})
	}
	return g, nil
}

func aggResultType(s aggSpec) (planpb.DataType, error) {
	switch s.fn {
	case planpb.AggregateFunction_COUNT:
		return planpb.DataType_LONG, nil
	case planpb.AggregateFunction_SUM:
		switch s.in {
		case planpb.DataType_LONG, planpb.DataType_INT:
			return planpb.DataType_LONG, nil
		case planpb.DataType_DOUBLE:
			return planpb.DataType_DOUBLE, nil
		}
	case planpb.AggregateFunction_AVG:
		if isNumeric(s.in) {
			return planpb.DataType_DOUBLE, nil
		}
	case planpb.AggregateFunction_MIN, planpb.AggregateFunction_MAX:
		switch s.in {
		case planpb.DataType_ARRAY_STRING, planpb.DataType_HEADERS, planpb.DataType_STRUCT:
		default:
			if !s.star {
				return s.in, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: %s does not apply to %s", ErrType, s.fn, TypeName(s.in))
}

// Input is the narrow chain feeding the aggregation.
func (g *Aggregation) Input() *Narrow { return g.input }

// Schema is the output schema: group keys then aggregates.
func (g *Aggregation) Schema() Schema { return g.schema }

// accum is the running state of one aggregate of one group.
type accum struct {
	n int64   // rows (count(*)) or non-null inputs
	i int64   // integer sum
	f float64 // floating sum
	v *Value  // min or max, owning its bytes; a pointer keeps accum small
}

// HashAgg aggregates rows by key in memory. A partial HashAgg (NewPartial)
// consumes input rows on the map side; a final one (NewFinal) merges encoded
// partials on the reduce side. Not safe for concurrent use.
type HashAgg struct {
	g      *Aggregation
	keys   []Expr
	args   []Expr // nil for count(*)
	table  *keyTable
	accs   []accum // table.len() * len(g.aggs)
	keyBuf []byte
	vals   []Value
	stars  bool // every aggregate is count(*): Add only counts rows
	// counts replaces accs when stars: one int64 per group and aggregate, a
	// quarter of an accum, so more groups stay in cache on the hot path.
	counts []int64
	keyCol int // the input column that is the only group key, or -1
	// counter replaces table and counts when stars and the only key is a
	// string: Add counts the key's bytes in place; nulls counts null keys.
	counter *strCounter
	nulls   int64
	// countOnly (finals of count-only aggregations) keeps groups in counts
	// instead of accs.
	countOnly bool
	// groupBytes is what a group took in the buckets of the last Flush
	// (reserve).
	groupBytes int
}

// NewPartial returns a map-side aggregator; feed it rows with Add (or use
// Emit as the narrow chain's output).
func (g *Aggregation) NewPartial() (*HashAgg, error) {
	h := g.NewFinal()
	h.countOnly = false // Add keeps accumulators, or counts by its own path
	in := g.input.Schema()
	var err error
	if h.keys, _, err = compileNamed(g.node.GetGroupBy(), in, g.input.env()); err != nil {
		return nil, err
	}
	h.keyCol = -1
	if len(h.keys) == 1 {
		if c, ok := h.keys[0].(*columnExpr); ok {
			h.keyCol = c.i
		}
	}
	h.args = make([]Expr, len(g.aggs))
	h.stars = true
	for i, ae := range g.node.GetAggregates() {
		h.stars = h.stars && ae.GetArg() == nil
		if ae.GetArg() != nil {
			if h.args[i], err = compileExpr(ae.GetArg(), in, g.input.env()); err != nil {
				return nil, err
			}
		}
	}
	if h.stars && len(h.keys) == 1 {
		if t := h.keys[0].Type(); t == planpb.DataType_STRING || t == planpb.DataType_BINARY {
			h.counter = g.seeds.counter()
		}
	}
	return h, nil
}

// Entry compiles the narrow chain feeding h and returns its entry, which
// takes rows of the Kafka schema. When the chain ends in explode(split(...))
// and h counts by the exploded column alone (word count), the split's pieces
// go straight to h's counter: no row per piece, no key encoding.
func (h *HashAgg) Entry() (Emit, error) {
	if h.counter != nil && h.keyCol == len(h.g.input.Schema())-1 {
		entries, ok, err := h.g.input.newPieces(h.counter)
		if ok || err != nil {
			return entries.row, err
		}
	}
	return h.g.input.New(h.Add)
}

// ValueEntry returns, when the chain feeding h only counts the pieces of
// CAST(value AS STRING) split and exploded (word count), a function to call
// with each record's value (nil for a tombstone) instead of its row: no row
// is built. It returns nil for any other chain.
func (h *HashAgg) ValueEntry() (func(value []byte), error) {
	if h.counter == nil || h.keyCol != len(h.g.input.Schema())-1 {
		return nil, nil
	}
	entries, _, err := h.g.input.newPieces(h.counter)
	return entries.value, err
}

// NewFinal returns a reduce-side aggregator fed with Merge.
func (g *Aggregation) NewFinal() *HashAgg {
	return &HashAgg{g: g, table: newKeyTable(), vals: make([]Value, len(g.keyTypes)), countOnly: g.counts}
}

// Len is the number of groups held.
func (h *HashAgg) Len() int {
	if h.counter != nil {
		return h.counter.len() + int(min(h.nulls, 1))
	}
	return h.table.len()
}

// Bound is an upper bound on Len, cheaper to ask for after every record:
// Len makes the word counter count every word it holds back to overlap
// their memory loads.
func (h *HashAgg) Bound() int {
	if h.counter != nil {
		return h.counter.bound() + int(min(h.nulls, 1))
	}
	return h.table.len()
}

// Reset forgets all groups, keeping allocated memory for reuse.
func (h *HashAgg) Reset() {
	h.table.reset()
	h.accs = h.accs[:0]
	h.counts = h.counts[:0]
	if h.counter != nil {
		h.counter.reset()
		h.nulls = 0
	}
}

// group returns the number of the group with the encoded key, adding it
// with zero accumulators (or counts, for a count-only aggregation).
func (h *HashAgg) group(key []byte) int {
	i, added := h.table.find(key)
	if added {
		for range h.g.aggs {
			if h.countOnly {
				h.counts = append(h.counts, 0)
			} else {
				h.accs = append(h.accs, accum{})
			}
		}
	}
	return i
}

// mergeGroup folds encoded accumulators from b into group gi and returns
// the rest of b. Count-only aggregations keep plain counts: a quarter of
// the memory of accumulators and no per-aggregate switch.
func (h *HashAgg) mergeGroup(gi int, b []byte) ([]byte, error) {
	n := len(h.g.aggs)
	if !h.countOnly {
		return h.mergeAccs(h.accs[gi*n:(gi+1)*n], b)
	}
	counts := h.counts[gi*n : (gi+1)*n]
	for i := range counts {
		c, rest, err := readCount(b)
		if err != nil {
			return nil, err
		}
		counts[i] += c
		b = rest
	}
	return b, nil
}

// readCount decodes an encoded count, the first field of every encoded
// accumulator.
func readCount(b []byte) (int64, []byte, error) {
	c, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, nil, fmt.Errorf("%w: bad count", ErrCorrupt)
	}
	return int64(c), b[k:], nil
}

// appendGroup encodes group gi's accumulators, as appendAccs does.
func (h *HashAgg) appendGroup(b []byte, gi int) []byte {
	n := len(h.g.aggs)
	if !h.countOnly {
		return h.appendAccs(b, h.accs[gi*n:(gi+1)*n])
	}
	for _, c := range h.counts[gi*n : (gi+1)*n] {
		b = binary.AppendUvarint(b, uint64(c))
	}
	return b
}

// outputGroup writes group gi's output row into row.
func (h *HashAgg) outputGroup(row Row, gi int) error {
	n, key := len(h.g.aggs), h.table.key(gi)
	if !h.countOnly {
		return h.g.outputRow(row, key, h.accs[gi*n:(gi+1)*n])
	}
	for i, c := range h.counts[gi*n : (gi+1)*n] {
		row[len(h.g.keyTypes)+i] = Long(c)
	}
	return decodeKey(row[:len(h.g.keyTypes)], key, h.g.keyTypes)
}

// Add folds one input row into its group.
func (h *HashAgg) Add(row Row) error {
	if h.counter != nil {
		var v Value
		if h.keyCol >= 0 {
			v = row[h.keyCol]
		} else {
			v = h.keys[0].Eval(row)
		}
		if v.Kind == KindNull {
			h.nulls++
		} else {
			h.counter.add(v.B)
		}
		return nil
	}
	switch {
	case h.keyCol >= 0: // read the cell in place: no call, no copy of the Value
		v := &row[h.keyCol]
		if v.Kind == KindString || v.Kind == KindBinary {
			h.keyBuf = append(append(h.keyBuf[:0], 1), v.B...)
		} else {
			h.keyBuf = appendKeyColumn(h.keyBuf[:0], *v, true)
		}
	case len(h.keys) == 1:
		v := h.keys[0].Eval(row) // a local: no write barriers on the hot path
		h.keyBuf = appendKeyColumn(h.keyBuf[:0], v, true)
	default:
		for i, k := range h.keys {
			h.vals[i] = k.Eval(row)
		}
		h.keyBuf = encodeKey(h.keyBuf[:0], h.vals)
	}
	if h.stars {
		n := len(h.g.aggs)
		g, added := h.table.find(h.keyBuf)
		if added {
			for range n {
				h.counts = append(h.counts, 0)
			}
		}
		for i := g * n; i < (g+1)*n; i++ {
			h.counts[i]++
		}
		return nil
	}
	n := len(h.g.aggs)
	gi := h.group(h.keyBuf)
	accs := h.accs[gi*n : (gi+1)*n]
	for i, a := range h.args {
		acc, spec := &accs[i], &h.g.aggs[i]
		if a == nil {
			acc.n++
			continue
		}
		v := a.Eval(row)
		if v.Kind == KindNull {
			continue
		}
		acc.n++
		switch spec.fn {
		case planpb.AggregateFunction_SUM, planpb.AggregateFunction_AVG:
			if v.Kind == KindDouble {
				acc.f += v.F
			} else {
				acc.i += v.I
				acc.f += float64(v.I)
			}
		case planpb.AggregateFunction_MIN, planpb.AggregateFunction_MAX:
			keepExtreme(acc, v, spec.fn == planpb.AggregateFunction_MIN)
		}
	}
	return nil
}

func keepExtreme(acc *accum, v Value, min bool) {
	if acc.v != nil {
		d := Compare(v, *acc.v)
		if (min && d >= 0) || (!min && d <= 0) {
			return
		}
	}
	c := v.Clone()
	acc.v = &c
}

// Absorb folds the groups of o, another partial of h's Aggregation, into h,
// as if h had been fed o's input too, and resets o. h then holds up to
// h.Len()+o.Len() groups.
func (h *HashAgg) Absorb(o *HashAgg) {
	n := len(h.g.aggs)
	switch {
	case h.counter != nil:
		h.counter.merge(o.counter)
		h.nulls += o.nulls
	case h.stars:
		for gi := range o.table.len() {
			g, added := h.table.find(o.table.key(gi))
			if added {
				for range n {
					h.counts = append(h.counts, 0)
				}
			}
			for i := range n {
				h.counts[g*n+i] += o.counts[gi*n+i]
			}
		}
	default:
		for gi := range o.table.len() {
			g := h.group(o.table.key(gi))
			accs, from := h.accs[g*n:(g+1)*n], o.accs[gi*n:(gi+1)*n]
			for i, spec := range h.g.aggs {
				acc, src := &accs[i], &from[i]
				acc.n += src.n
				acc.i += src.i
				acc.f += src.f
				if src.v != nil {
					keepExtreme(acc, *src.v, spec.fn == planpb.AggregateFunction_MIN)
				}
			}
		}
	}
	o.Reset()
}

// Flush encodes every group into the exchange bucket of its state partition
// (x.Partition of its key), appending to dst (grown to x.Partitions()
// buckets), and resets the aggregator.
func (h *HashAgg) Flush(x *Exchange, dst [][]byte) [][]byte {
	for len(dst) < x.Partitions() {
		dst = append(dst, nil)
	}
	defer h.reserve(x, dst)()
	n := len(h.g.aggs)
	if h.counter != nil {
		put := func(k []byte, count int64) {
			p := x.owning(x.group(k))
			b := binary.AppendUvarint(dst[p], uint64(len(k)))
			b = append(b, k...)
			for range n { // every aggregate is count(*), each the same count
				b = binary.AppendUvarint(b, uint64(count))
			}
			dst[p] = b
		}
		if h.nulls > 0 {
			put([]byte{0}, h.nulls)
		}
		h.counter.takeAfter(1, put) // a key's encoding: 1 (not null), its bytes
		h.Reset()
		return dst
	}
	for gi := range h.table.len() {
		k := h.table.key(gi)
		p := x.owning(x.group(k))
		b := binary.AppendUvarint(dst[p], uint64(len(k)))
		b = append(b, k...)
		if h.stars { // count(*) encodes as its count alone, as appendAccs would
			for _, c := range h.counts[gi*n : (gi+1)*n] {
				b = binary.AppendUvarint(b, uint64(c))
			}
			dst[p] = b
			continue
		}
		dst[p] = h.appendAccs(b, h.accs[gi*n:(gi+1)*n])
	}
	h.Reset()
	return dst
}

// reserve grows each of Flush's buckets, dst, by its share of the groups h
// holds, at the bytes per group of h's last Flush (16 before the first)
// and an eighth more, so that Flush appends without growing them again. Flush
// calls what it returns when it is done, which learns the bytes per group
// of this one.
func (h *HashAgg) reserve(x *Exchange, dst [][]byte) (done func()) {
	groups, before := h.Len(), 0
	per := h.groupBytes
	if per == 0 {
		per = 16
	}
	for p := range dst {
		before += len(dst[p])
		dst[p] = slices.Grow(dst[p], x.share(p, groups*per*9/8)+64)
	}
	return func() {
		after := 0
		for _, b := range dst {
			after += len(b)
		}
		if groups > 0 {
			h.groupBytes = (after - before + groups - 1) / groups
		}
	}
}

// Merge folds an exchange bucket (from Flush) into the aggregator.
func (h *HashAgg) Merge(bucket []byte) error {
	for len(bucket) > 0 {
		kl, n := binary.Uvarint(bucket)
		if n <= 0 || uint64(len(bucket)-n) < kl {
			return fmt.Errorf("%w: bad key length in exchange bucket", ErrCorrupt)
		}
		key := bucket[n : n+int(kl)]
		rest, err := h.mergeGroup(h.group(key), bucket[n+int(kl):])
		if err != nil {
			return err
		}
		bucket = rest
	}
	return nil
}

// StateStore is the part of a state store the final aggregation needs.
type StateStore interface {
	Get(key []byte) ([]byte, bool, error)
	Put(key, value []byte) error
}

// MergeInto folds the held groups into the state store: each group's
// committed state (if any) is merged with the batch's partials and written
// back. changed, if not nil, receives the updated output row of every group
// (update mode). The aggregator is reset afterwards. A store with a
// Prefetch(key) method is told of each key prefetchAhead Gets before it is
// read (state's in-memory tables then overlap the keys' cache misses).
func (h *HashAgg) MergeInto(st StateStore, changed Emit) error {
	var enc []byte
	row := make(Row, len(h.g.schema))
	order := h.mergeOrder(st)
	pf, _ := st.(interface{ Prefetch(key []byte) })
	for i, g := range order {
		if pf != nil && i+prefetchAhead < len(order) {
			pf.Prefetch(h.table.key(int(order[i+prefetchAhead])))
		}
		gi := int(g)
		key := h.table.key(gi)
		old, found, err := st.Get(key)
		if err != nil {
			return err
		}
		if found {
			if _, err := h.mergeGroup(gi, old); err != nil {
				return fmt.Errorf("state of key %q: %w", key, err)
			}
		}
		enc = h.appendGroup(enc[:0], gi)
		if err := st.Put(key, enc); err != nil {
			return err
		}
		if changed != nil {
			if err := h.outputGroup(row, gi); err != nil {
				return err
			}
			if err := changed(row); err != nil {
				return err
			}
		}
	}
	h.Reset()
	return nil
}

// prefetchAhead is how many groups ahead of its Get MergeInto prefetches a
// key (twice the state table's prefetch depth).
const prefetchAhead = 16

// mergeOrder is the order in which MergeInto visits the groups: key order,
// as a store on disk reads a sorted run of keys far faster than scattered
// ones, unless st says (with an InMemory method) that it holds its state
// in memory, where any order costs the same and the sort is saved.
func (h *HashAgg) mergeOrder(st StateStore) []int32 {
	if m, ok := st.(interface{ InMemory() bool }); !ok || !m.InMemory() {
		return h.table.sortedGroups()
	}
	order := make([]int32, h.table.len())
	for g := range order {
		order[g] = int32(g)
	}
	return order
}

// EachCommitted calls fn with the key and the state st holds of every held
// group, in key order, and resets the aggregator. It serves a batch re-run
// after its state committed: the groups tell which rows the batch changed,
// and st holds their states with the batch applied (DecodeRow turns one
// into its row). The slices are valid only during the call.
func (h *HashAgg) EachCommitted(st StateStore, fn func(key, state []byte) error) error {
	for _, g := range h.table.sortedGroups() {
		key := h.table.key(int(g))
		state, found, err := st.Get(key)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: the state lacks group %q of a batch it committed", ErrCorrupt, key)
		}
		if err := fn(key, state); err != nil {
			return err
		}
	}
	h.Reset()
	return nil
}

// DecodeRow turns a stored key and state into an output row, written into
// row (len(Schema())). Strings in the row reference key and state.
func (g *Aggregation) DecodeRow(row Row, key, state []byte) error {
	if g.counts {
		// Every aggregate is a count, stored as its count alone: decode in
		// place, without accumulators (complete mode does this for every
		// row of the result table every batch).
		for i := range g.aggs {
			n, rest, err := readCount(state)
			if err != nil {
				return err
			}
			row[len(g.keyTypes)+i] = Long(n)
			state = rest
		}
		return decodeKey(row[:len(g.keyTypes)], key, g.keyTypes)
	}
	accs := make([]accum, len(g.aggs))
	h := HashAgg{g: g}
	if _, err := h.mergeAccs(accs, state); err != nil {
		return err
	}
	return g.outputRow(row, key, accs)
}

func (g *Aggregation) outputRow(row Row, key []byte, accs []accum) error {
	if err := decodeKey(row[:len(g.keyTypes)], key, g.keyTypes); err != nil {
		return err
	}
	for i, spec := range g.aggs {
		acc := accs[i]
		out := &row[len(g.keyTypes)+i]
		switch {
		case spec.fn == planpb.AggregateFunction_COUNT:
			*out = Long(acc.n)
		case acc.n == 0:
			*out = Null
		case spec.fn == planpb.AggregateFunction_AVG:
			*out = Double(acc.f / float64(acc.n))
		case spec.fn == planpb.AggregateFunction_SUM && spec.result == planpb.DataType_DOUBLE:
			*out = Double(acc.f)
		case spec.fn == planpb.AggregateFunction_SUM:
			*out = Long(acc.i)
		default:
			*out = *acc.v
		}
	}
	return nil
}

// appendAccs encodes accumulators: per aggregate, the input count, then the
// sum (integer or float) or the extreme value.
func (h *HashAgg) appendAccs(b []byte, accs []accum) []byte {
	for i, spec := range h.g.aggs {
		acc := &accs[i]
		b = binary.AppendUvarint(b, uint64(acc.n))
		switch spec.fn {
		case planpb.AggregateFunction_SUM, planpb.AggregateFunction_AVG:
			if spec.in == planpb.DataType_DOUBLE || spec.fn == planpb.AggregateFunction_AVG {
				b = binary.BigEndian.AppendUint64(b, math.Float64bits(acc.f))
			} else {
				b = binary.AppendVarint(b, acc.i)
			}
		case planpb.AggregateFunction_MIN, planpb.AggregateFunction_MAX:
			if acc.n > 0 {
				b = appendValue(b, *acc.v)
			}
		}
	}
	return b
}

// mergeAccs decodes encoded accumulators from b, folds them into accs and
// returns the rest of b.
func (h *HashAgg) mergeAccs(accs []accum, b []byte) ([]byte, error) {
	for i, spec := range h.g.aggs {
		acc := &accs[i]
		cnt, rest, err := readCount(b)
		if err != nil {
			return nil, err
		}
		b = rest
		switch spec.fn {
		case planpb.AggregateFunction_SUM, planpb.AggregateFunction_AVG:
			if spec.in == planpb.DataType_DOUBLE || spec.fn == planpb.AggregateFunction_AVG {
				if len(b) < 8 {
					return nil, fmt.Errorf("%w: short sum", ErrCorrupt)
				}
				acc.f += math.Float64frombits(binary.BigEndian.Uint64(b))
				b = b[8:]
			} else {
				s, n := binary.Varint(b)
				if n <= 0 {
					return nil, fmt.Errorf("%w: bad sum", ErrCorrupt)
				}
				acc.i += s
				b = b[n:]
			}
		case planpb.AggregateFunction_MIN, planpb.AggregateFunction_MAX:
			if cnt > 0 {
				v, rest, err := readValue(b, kindOf(spec.in))
				if err != nil {
					return nil, err
				}
				b = rest
				keepExtreme(acc, v, spec.fn == planpb.AggregateFunction_MIN)
			}
		}
		acc.n += cnt
	}
	return b, nil
}

// encodeKey encodes group key values: per column a null flag then the value;
// a string or binary in the last column takes the rest of the key without a
// length, so a single-string key is its bytes after one flag byte.
func encodeKey(b []byte, vals []Value) []byte {
	for i, v := range vals {
		b = appendKeyColumn(b, v, i == len(vals)-1)
	}
	return b
}

func appendKeyColumn(b []byte, v Value, last bool) []byte {
	if v.Kind == KindNull {
		return append(b, 0)
	}
	b = append(b, 1)
	if last && (v.Kind == KindString || v.Kind == KindBinary) {
		return append(b, v.B...)
	}
	return appendValue(b, v)
}

func decodeKey(row Row, b []byte, types []planpb.DataType) error {
	for i, t := range types {
		if len(b) == 0 {
			return fmt.Errorf("%w: short group key", ErrCorrupt)
		}
		flag := b[0]
		b = b[1:]
		if flag == 0 {
			row[i] = Null
			continue
		}
		k := kindOf(t)
		if i == len(types)-1 && (k == KindString || k == KindBinary) {
			row[i] = Value{Kind: k, B: b}
			return nil
		}
		v, rest, err := readValue(b, k)
		if err != nil {
			return err
		}
		row[i], b = v, rest
	}
	return nil
}

func appendValue(b []byte, v Value) []byte {
	switch v.Kind {
	case KindString, KindBinary:
		b = binary.AppendUvarint(b, uint64(len(v.B)))
		return append(b, v.B...)
	case KindDouble:
		return binary.BigEndian.AppendUint64(b, math.Float64bits(v.F))
	}
	return binary.AppendVarint(b, v.I)
}

func readValue(b []byte, k Kind) (Value, []byte, error) {
	switch k {
	case KindString, KindBinary:
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return Null, nil, fmt.Errorf("%w: bad string length", ErrCorrupt)
		}
		return Value{Kind: k, B: b[n : n+int(l)]}, b[n+int(l):], nil
	case KindDouble:
		if len(b) < 8 {
			return Null, nil, fmt.Errorf("%w: short double", ErrCorrupt)
		}
		return Double(math.Float64frombits(binary.BigEndian.Uint64(b))), b[8:], nil
	}
	i, n := binary.Varint(b)
	if n <= 0 {
		return Null, nil, fmt.Errorf("%w: bad integer", ErrCorrupt)
	}
	return Value{Kind: k, I: i}, b[n:], nil
}
