package loop

import (
	"time"

	"github.com/gostream/gostream/kafkasrc"
)

// Covers reports whether every partition of target is at or below have.
func Covers(have, target kafkasrc.Offsets) bool {
	for t, parts := range target {
		for p, off := range parts {
			if got, ok := have.Get(t, p); (!ok && off > 0) || got < off {
				return false
			}
		}
	}
	return true
}

// maxOffsets is a merge of two views of the latest offsets, each partition
// at the higher one.
func maxOffsets(a, b kafkasrc.Offsets) kafkasrc.Offsets {
	out := a.Clone()
	for t, parts := range b {
		for p, off := range parts {
			if cur, ok := out.Get(t, p); !ok || off > cur {
				out.Set(t, p, off)
			}
		}
	}
	return out
}

// clampOffsets limits latest to target, partition by partition.
func clampOffsets(latest, target kafkasrc.Offsets) kafkasrc.Offsets {
	out := latest.Clone()
	for t, parts := range out {
		for p, off := range parts {
			if lim, ok := target.Get(t, p); ok && off > lim {
				parts[p] = lim
			} else if !ok {
				delete(parts, p) // a partition added after the start waits for the next run
			}
		}
		if len(parts) == 0 {
			delete(out, t)
		}
	}
	return out
}

// startOffsets is where each partition of the plan starts.
func startOffsets(p kafkasrc.Plan) kafkasrc.Offsets {
	start := p.End.Clone()
	for _, r := range p.Ranges {
		if cur, _ := start.Get(r.Topic, r.Partition); r.From < cur {
			start.Set(r.Topic, r.Partition, r.From)
		}
	}
	return start
}

// nextTick is the first tick of a processing-time trigger after now, on the
// grid of interval-spaced ticks through next: ticks missed while a batch
// overran are skipped, in a constant time whatever their number.
func nextTick(next, now time.Time, interval time.Duration) time.Time {
	if next.After(now) {
		return next
	}
	return next.Add((now.Sub(next)/interval + 1) * interval)
}
