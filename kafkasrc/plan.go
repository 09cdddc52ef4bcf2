package kafkasrc

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// Range is one map task's exact offset range [From, Until) of one partition.
type Range struct {
	Topic     string
	Partition int32
	From      int64 // first offset to read
	Until     int64 // first offset not to read
}

// Len returns the number of offsets in the range (not the number of records:
// compaction gaps and transaction markers take offsets without records).
func (r Range) Len() int64 { return r.Until - r.From }

// String returns "topic/partition[from,until)".
func (r Range) String() string {
	return fmt.Sprintf("%s/%d[%d,%d)", r.Topic, r.Partition, r.From, r.Until)
}

// PlanInput is everything PlanBatch needs; it does no I/O.
type PlanInput struct {
	// Prev holds the end offsets of the previous batch; nil for the first
	// batch of a new query, which starts at Starting instead.
	Prev Offsets
	// Starting is the startingOffsets option, used only when Prev is nil.
	Starting StartingOffsets
	// Earliest and Latest are the log start offsets and high watermarks of
	// every partition of the subscribed topics now (see Source.Offsets). They
	// must name the same partitions.
	Earliest, Latest Offsets
	// MaxOffsetsPerTrigger caps the offsets of one batch, split over
	// partitions in proportion to their backlog; 0 (the default) means no
	// cap.
	MaxOffsetsPerTrigger int64
	// MinPartitions splits large ranges so the batch has at least this many
	// ranges (when it has at least this many offsets); 0 (the default) means
	// one range per partition with new data.
	MinPartitions int
	// FailOnDataLoss makes lost offsets an error instead of a warning.
	FailOnDataLoss bool
}

// Plan is one micro-batch: the ranges to read and where the next batch
// starts.
type Plan struct {
	// Ranges holds only non-empty ranges, sorted by topic, partition and
	// From. No ranges means no new data.
	Ranges []Range
	// End holds the end offset of every partition in PlanInput.Latest; it is
	// the next batch's Prev. A partition without new data ends where it
	// started.
	End Offsets
	// Warnings describes data loss skipped because FailOnDataLoss is false.
	Warnings []string
}

// PlanBatch computes the next micro-batch the way Spark's Kafka source does:
//
//   - The first batch (Prev == nil) starts at Starting: earliest, latest, or
//     the specific offsets, where -2/-1 resolve to earliest/latest. Like
//     Spark, specific offsets must name every partition of the subscribed
//     topics, else the error wraps ErrInvalidOffsets.
//   - Later batches start at Prev. Partitions that appeared since (the topic
//     got more partitions) start at their earliest offset.
//   - Data loss is a start offset below earliest (deleted by retention or
//     DeleteRecords), above latest (topic recreated), a new partition whose
//     earliest offset is not 0, or a partition of Prev that no longer exists.
//     With FailOnDataLoss it is an error wrapping ErrDataLoss that names
//     every affected partition and offset and how to go on; without, it
//     becomes a Warning and the partition starts at its earliest offset,
//     which the warning names.
//   - Every batch ends at Latest, unless MaxOffsetsPerTrigger caps it. The cap
//     is split in proportion to each partition's backlog, rounding by largest
//     remainder, so the sum equals the cap exactly when the backlog exceeds
//     it (Spark rounds small shares up and can overshoot) and some partition
//     always advances while data is waiting.
//   - MinPartitions splits ranges in proportion to their size, like Spark's
//     KafkaOffsetRangeCalculator, but guarantees at least MinPartitions
//     ranges whenever the batch has that many offsets.
func PlanBatch(in PlanInput) (Plan, error) {
	if err := in.validate(); err != nil {
		return Plan{}, err
	}
	start, losses, err := in.startOffsets()
	if err != nil {
		return Plan{}, err
	}
	var plan Plan
	if len(losses) > 0 {
		if in.FailOnDataLoss {
			what := make([]string, len(losses))
			for i, l := range losses {
				what[i] = l.what
			}
			return Plan{}, dataLossError(strings.Join(what, "; "))
		}
		for _, l := range losses {
			w := dataLossWarning(l.what)
			if l.resume >= 0 {
				w += fmt.Sprintf("; continuing at offset %d", l.resume)
			}
			plan.Warnings = append(plan.Warnings, w)
		}
	}
	plan.End = in.Latest.Clone()
	if in.MaxOffsetsPerTrigger > 0 {
		rateLimit(start, plan.End, in.MaxOffsetsPerTrigger)
	}
	for _, topic := range sortedKeys(plan.End) {
		for _, p := range sortedKeys(plan.End[topic]) {
			from, until := start[topic][p], plan.End[topic][p]
			if from < until {
				plan.Ranges = append(plan.Ranges, Range{Topic: topic, Partition: p, From: from, Until: until})
			}
		}
	}
	plan.Ranges = splitRanges(plan.Ranges, in.MinPartitions)
	return plan, nil
}

func (in *PlanInput) validate() error {
	bad := func(format string, args ...any) error {
		return errorf(ErrInvalidOffsets, "kafka: invalid plan input: "+format, args...)
	}
	if in.MaxOffsetsPerTrigger < 0 {
		return bad("maxOffsetsPerTrigger is %d; want 0 (no cap) or a positive number", in.MaxOffsetsPerTrigger)
	}
	if in.MinPartitions < 0 {
		return bad("minPartitions is %d; want 0 (one range per partition) or a positive number", in.MinPartitions)
	}
	if countPartitions(in.Latest) == 0 {
		return bad("no partitions in the latest offsets")
	}
	if countPartitions(in.Earliest) != countPartitions(in.Latest) {
		return bad("earliest offsets %s and latest offsets %s name different partitions", in.Earliest, in.Latest)
	}
	for topic, parts := range in.Latest {
		for p, l := range parts {
			e, ok := in.Earliest.Get(topic, p)
			if !ok || e < 0 || e > l {
				return bad("%s/%d: want 0 <= earliest <= latest, got earliest %s latest %d", topic, p, offsetText(e, ok), l)
			}
		}
	}
	for topic, parts := range in.Prev {
		for p, off := range parts {
			if off < 0 {
				return bad("previous end offset of %s/%d is %d; want >= 0", topic, p, off)
			}
		}
	}
	if in.Prev == nil {
		return in.Starting.validate()
	}
	return nil
}

func offsetText(off int64, ok bool) string {
	if !ok {
		return "missing"
	}
	return fmt.Sprint(off)
}

// dataLossError is the error, wrapping ErrDataLoss, of a query that stops
// because of the data loss what describes (failOnDataLoss=true).
func dataLossError(what string) error {
	return errorf(ErrDataLoss, "kafka: data loss: %s; the query stops here (to skip the lost offsets and go on with a warning, set failOnDataLoss=false: the source option, or gostream submit --fail-on-data-loss=false; or start the query with a new checkpoint)", what)
}

// dataLossWarning is the warning of the data loss what describes, skipped
// (failOnDataLoss=false).
func dataLossWarning(what string) string {
	return "kafka: data loss skipped (failOnDataLoss=false): " + what
}

// dataLoss describes offsets lost to a partition's readers, and the offset
// its reading resumes at when losses are skipped (-1: none, the partition
// is gone).
type dataLoss struct {
	what   string
	resume int64
}

// startOffsets resolves every partition's start offset and lists data loss.
func (in *PlanInput) startOffsets() (Offsets, []dataLoss, error) {
	if in.Prev == nil && in.Starting.Specific != nil {
		if err := checkSameKeys(in.Starting.Specific, in.Latest); err != nil {
			return nil, nil, err
		}
	}
	start := make(Offsets, len(in.Latest))
	var losses []dataLoss
	for _, topic := range sortedKeys(in.Latest) {
		for _, p := range sortedKeys(in.Latest[topic]) {
			e, l := in.Earliest[topic][p], in.Latest[topic][p]
			s, check := e, true
			switch prev, ok := in.Prev.Get(topic, p); {
			case in.Prev == nil && in.Starting.Earliest:
				check = false
			case in.Prev == nil && in.Starting.Latest:
				s, check = l, false
			case in.Prev == nil:
				s = in.Starting.Specific[topic][p]
				switch s {
				case OffsetEarliest:
					s, check = e, false
				case OffsetLatest:
					s, check = l, false
				}
			case ok:
				s = prev
			default: // a partition added since the previous batch
				check = false
				if e != 0 {
					losses = append(losses, dataLoss{fmt.Sprintf("%s/%d: new partition starts at offset %d, not 0; offsets [0, %d) were deleted before they could be read", topic, p, e, e), e})
				}
			}
			if check && s < e {
				losses = append(losses, dataLoss{fmt.Sprintf("%s/%d: offsets [%d, %d) were deleted (retention or DeleteRecords) before they were read", topic, p, s, e), e})
				s = e
			}
			if check && s > l {
				losses = append(losses, dataLoss{fmt.Sprintf("%s/%d: start offset %d is beyond the latest offset %d (was the topic deleted and recreated?)", topic, p, s, l), e})
				s = e
			}
			start.Set(topic, p, s)
		}
	}
	for _, topic := range sortedKeys(in.Prev) {
		for _, p := range sortedKeys(in.Prev[topic]) {
			if _, ok := in.Latest.Get(topic, p); !ok {
				losses = append(losses, dataLoss{fmt.Sprintf("%s/%d: partition is gone (topic deleted or recreated with fewer partitions); offsets from %d on were not read", topic, p, in.Prev[topic][p]), -1})
			}
		}
	}
	return start, losses, nil
}

// checkSameKeys reports specific startingOffsets that do not name exactly the
// partitions of the subscribed topics, as Spark requires.
func checkSameKeys(specific, latest Offsets) error {
	var missing, unknown []string
	diff := func(a, b Offsets) (out []string) {
		for _, topic := range sortedKeys(a) {
			for _, p := range sortedKeys(a[topic]) {
				if _, ok := b.Get(topic, p); !ok {
					out = append(out, fmt.Sprintf("%s/%d", topic, p))
				}
			}
		}
		return out
	}
	missing, unknown = diff(latest, specific), diff(specific, latest)
	if len(missing) == 0 && len(unknown) == 0 {
		return nil
	}
	var why []string
	if len(missing) > 0 {
		why = append(why, "missing "+strings.Join(missing, ", "))
	}
	if len(unknown) > 0 {
		why = append(why, "no such partition "+strings.Join(unknown, ", "))
	}
	return errorf(ErrInvalidOffsets, "kafka: startingOffsets must name every partition of the subscribed topics (use -2 for earliest, -1 for latest): %s; the topics have %s",
		strings.Join(why, "; "), latest)
}

// mulDiv returns a*b/c and its remainder; the quotient must fit in 64 bits.
func mulDiv(a, b, c uint64) (q, r uint64) {
	hi, lo := bits.Mul64(a, b)
	return bits.Div64(hi, lo, c)
}

// share ranks a claimant for the units left after the whole parts.
type share struct {
	idx int    // position in the claimants
	rem uint64 // remainder of its proportional part
}

// apportion splits units over claimants in proportion to their weights by
// largest remainder: the sum is min(units, sum of room) and ties go to the
// earlier claimant. Each claimant gets at most its room and at least floor
// (when it has that much room).
func apportion(units uint64, weights, room []uint64, floor uint64) []uint64 {
	var total uint64
	for _, w := range weights {
		total += w
	}
	out := make([]uint64, len(weights))
	shares := make([]share, len(weights))
	var given uint64
	for i, w := range weights {
		q, r := mulDiv(units, w, total)
		q = min(max(q, floor), room[i])
		out[i] = q
		given += q
		shares[i] = share{idx: i, rem: r}
	}
	slices.SortStableFunc(shares, func(a, b share) int { return cmp.Compare(b.rem, a.rem) })
	for given < units {
		progressed := false
		for _, s := range shares {
			if given == units {
				break
			}
			if out[s.idx] < room[s.idx] {
				out[s.idx]++
				given++
				progressed = true
			}
		}
		if !progressed {
			break
		}
	}
	return out
}

// rateLimit lowers until so the batch holds at most limit offsets.
func rateLimit(start, until Offsets, limit int64) {
	type tp struct {
		topic string
		p     int32
	}
	var tps []tp
	var sizes []uint64
	var total uint64
	for _, topic := range sortedKeys(until) {
		for _, p := range sortedKeys(until[topic]) {
			if size := until[topic][p] - start[topic][p]; size > 0 {
				tps = append(tps, tp{topic, p})
				sizes = append(sizes, uint64(size))
				total += uint64(size)
			}
		}
	}
	if total <= uint64(limit) {
		return
	}
	for i, n := range apportion(uint64(limit), sizes, sizes, 0) {
		until[tps[i].topic][tps[i].p] = start[tps[i].topic][tps[i].p] + int64(n)
	}
}

// splitRanges splits rs into at least minParts ranges, each range getting a
// number of pieces in proportion to its size.
func splitRanges(rs []Range, minParts int) []Range {
	if minParts <= len(rs) {
		return rs
	}
	sizes := make([]uint64, len(rs))
	for i, r := range rs {
		sizes[i] = uint64(r.Len())
	}
	pieces := apportion(uint64(minParts), sizes, sizes, 1)
	out := make([]Range, 0, minParts)
	for i, r := range rs {
		n := int64(pieces[i])
		size, from := r.Len(), r.From
		for k := range n {
			step := size / n
			if k < size%n {
				step++
			}
			out = append(out, Range{Topic: r.Topic, Partition: r.Partition, From: from, Until: from + step})
			from += step
		}
	}
	return out
}
