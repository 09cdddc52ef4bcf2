package kafkasrc

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPlanBatch(t *testing.T) {
	three := func(a, b, c int64) Offsets { return Offsets{"logs": {0: a, 1: b, 2: c}} }
	earliest := StartingOffsets{Earliest: true}
	tests := []struct {
		name       string
		in         PlanInput
		wantRanges string // Range.String()s joined by " "
		wantEnd    Offsets
		wantWarn   []string // substrings, one per warning
		wantErr    error
		errHas     string
	}{
		{
			name:       "first batch earliest",
			in:         PlanInput{Starting: earliest, Earliest: three(0, 5, 0), Latest: three(10, 5, 3)},
			wantRanges: "logs/0[0,10) logs/2[0,3)",
			wantEnd:    three(10, 5, 3),
		},
		{
			name:       "first batch latest has no data",
			in:         PlanInput{Starting: StartingOffsets{Latest: true}, Earliest: three(0, 0, 0), Latest: three(10, 5, 3)},
			wantRanges: "",
			wantEnd:    three(10, 5, 3),
		},
		{
			name: "first batch specific with -2 and -1",
			in: PlanInput{Starting: StartingOffsets{Specific: three(4, OffsetEarliest, OffsetLatest)},
				Earliest: three(0, 2, 0), Latest: three(10, 5, 3)},
			wantRanges: "logs/0[4,10) logs/1[2,5)",
			wantEnd:    three(10, 5, 3),
		},
		{
			name: "specific must name every partition",
			in: PlanInput{Starting: StartingOffsets{Specific: Offsets{"logs": {0: 1, 7: 1}}},
				Earliest: three(0, 0, 0), Latest: three(10, 5, 3)},
			wantErr: ErrInvalidOffsets,
			errHas:  "missing logs/1, logs/2; no such partition logs/7",
		},
		{
			name:    "specific below earliest fails",
			in:      PlanInput{Starting: StartingOffsets{Specific: three(1, 0, 0)}, Earliest: three(3, 0, 0), Latest: three(10, 5, 3), FailOnDataLoss: true},
			wantErr: ErrDataLoss,
			errHas:  "logs/0: offsets [1, 3) were deleted",
		},
		{
			name:       "later batch continues at prev",
			in:         PlanInput{Prev: three(10, 5, 3), Earliest: three(0, 0, 0), Latest: three(12, 5, 4)},
			wantRanges: "logs/0[10,12) logs/2[3,4)",
			wantEnd:    three(12, 5, 4),
		},
		{
			name:       "no new data",
			in:         PlanInput{Prev: three(10, 5, 3), Earliest: three(0, 0, 0), Latest: three(10, 5, 3)},
			wantRanges: "",
			wantEnd:    three(10, 5, 3),
		},
		{
			name: "new partition starts at earliest",
			in: PlanInput{Prev: Offsets{"logs": {0: 10}}, Earliest: Offsets{"logs": {0: 0, 1: 0}},
				Latest: Offsets{"logs": {0: 10, 1: 4}}, FailOnDataLoss: true},
			wantRanges: "logs/1[0,4)",
			wantEnd:    Offsets{"logs": {0: 10, 1: 4}},
		},
		{
			name: "new partition with deleted head is data loss",
			in: PlanInput{Prev: Offsets{"logs": {0: 10}}, Earliest: Offsets{"logs": {0: 0, 1: 2}},
				Latest: Offsets{"logs": {0: 10, 1: 4}}, FailOnDataLoss: true},
			wantErr: ErrDataLoss,
			errHas:  "logs/1: new partition starts at offset 2, not 0",
		},
		{
			name:    "retention deleted offsets, fail",
			in:      PlanInput{Prev: three(10, 5, 3), Earliest: three(15, 0, 0), Latest: three(20, 5, 3), FailOnDataLoss: true},
			wantErr: ErrDataLoss,
			errHas:  "logs/0: offsets [10, 15) were deleted (retention or DeleteRecords) before they were read; the query stops here (to skip the lost offsets and go on with a warning, set failOnDataLoss=false: the source option, or gostream submit --fail-on-data-loss=false;",
		},
		{
			name:       "retention deleted offsets, warn",
			in:         PlanInput{Prev: three(10, 5, 3), Earliest: three(15, 0, 0), Latest: three(20, 5, 3)},
			wantRanges: "logs/0[15,20)",
			wantEnd:    three(20, 5, 3),
			wantWarn:   []string{"failOnDataLoss=false): logs/0: offsets [10, 15) were deleted (retention or DeleteRecords) before they were read; continuing at offset 15"},
		},
		{
			name:       "topic recreated, warn and start at earliest",
			in:         PlanInput{Prev: three(10, 5, 3), Earliest: three(0, 0, 0), Latest: three(4, 5, 3)},
			wantRanges: "logs/0[0,4)",
			wantEnd:    three(4, 5, 3),
			wantWarn:   []string{"logs/0: start offset 10 is beyond the latest offset 4 (was the topic deleted and recreated?); continuing at offset 0"},
		},
		{
			name:    "partition gone, fail",
			in:      PlanInput{Prev: three(10, 5, 3), Earliest: Offsets{"logs": {0: 0}}, Latest: Offsets{"logs": {0: 10}}, FailOnDataLoss: true},
			wantErr: ErrDataLoss,
			errHas:  "logs/1: partition is gone (topic deleted or recreated with fewer partitions); offsets from 5 on were not read; logs/2: partition is gone",
		},
		{
			name:       "partition gone, warn",
			in:         PlanInput{Prev: Offsets{"logs": {0: 10, 1: 5}, "old": {0: 1}}, Earliest: Offsets{"logs": {0: 0}}, Latest: Offsets{"logs": {0: 12}}},
			wantRanges: "logs/0[10,12)",
			wantEnd:    Offsets{"logs": {0: 12}},
			wantWarn:   []string{"logs/1: partition is gone", "old/0: partition is gone"},
		},
		{
			name:       "cap split in proportion to backlog",
			in:         PlanInput{Prev: three(0, 0, 0), Earliest: three(0, 0, 0), Latest: three(600, 300, 100), MaxOffsetsPerTrigger: 100},
			wantRanges: "logs/0[0,60) logs/1[0,30) logs/2[0,10)",
			wantEnd:    three(60, 30, 10),
		},
		{
			name:       "cap remainder goes to largest remainders",
			in:         PlanInput{Prev: three(0, 0, 0), Earliest: three(0, 0, 0), Latest: three(1, 1, 1), MaxOffsetsPerTrigger: 2},
			wantRanges: "logs/0[0,1) logs/1[0,1)",
			wantEnd:    three(1, 1, 0),
		},
		{
			name:       "cap of 1 still progresses with tiny backlogs",
			in:         PlanInput{Prev: three(5, 5, 5), Earliest: three(0, 0, 0), Latest: three(1000, 6, 6), MaxOffsetsPerTrigger: 1},
			wantRanges: "logs/0[5,6)",
			wantEnd:    three(6, 5, 5),
		},
		{
			name:       "cap above backlog takes everything",
			in:         PlanInput{Prev: three(0, 0, 0), Earliest: three(0, 0, 0), Latest: three(3, 2, 1), MaxOffsetsPerTrigger: 1000},
			wantRanges: "logs/0[0,3) logs/1[0,2) logs/2[0,1)",
			wantEnd:    three(3, 2, 1),
		},
		{
			name:       "min partitions splits in proportion",
			in:         PlanInput{Prev: three(0, 0, 0), Earliest: three(0, 0, 0), Latest: three(90, 10, 0), MinPartitions: 5},
			wantRanges: "logs/0[0,23) logs/0[23,46) logs/0[46,68) logs/0[68,90) logs/1[0,10)",
			wantEnd:    three(90, 10, 0),
		},
		{
			name:       "min partitions already met",
			in:         PlanInput{Prev: three(0, 0, 0), Earliest: three(0, 0, 0), Latest: three(90, 10, 5), MinPartitions: 3},
			wantRanges: "logs/0[0,90) logs/1[0,10) logs/2[0,5)",
			wantEnd:    three(90, 10, 5),
		},
		{
			name:       "min partitions limited by offsets",
			in:         PlanInput{Prev: three(0, 0, 0), Earliest: three(0, 0, 0), Latest: three(2, 1, 0), MinPartitions: 10},
			wantRanges: "logs/0[0,1) logs/0[1,2) logs/1[0,1)",
			wantEnd:    three(2, 1, 0),
		},
		{
			name:       "cap then min partitions",
			in:         PlanInput{Prev: three(0, 0, 0), Earliest: three(0, 0, 0), Latest: three(1000, 1000, 0), MaxOffsetsPerTrigger: 10, MinPartitions: 4},
			wantRanges: "logs/0[0,3) logs/0[3,5) logs/1[0,3) logs/1[3,5)",
			wantEnd:    three(5, 5, 0),
		},
		{
			name:    "zero starting offsets",
			in:      PlanInput{Earliest: three(0, 0, 0), Latest: three(1, 1, 1)},
			wantErr: ErrInvalidOffsets,
			errHas:  "exactly one of earliest, latest or specific",
		},
		{
			name:    "earliest after latest",
			in:      PlanInput{Starting: earliest, Earliest: three(5, 0, 0), Latest: three(1, 1, 1)},
			wantErr: ErrInvalidOffsets,
			errHas:  "logs/0: want 0 <= earliest <= latest",
		},
		{
			name:    "negative cap",
			in:      PlanInput{Starting: earliest, Earliest: three(0, 0, 0), Latest: three(1, 1, 1), MaxOffsetsPerTrigger: -1},
			wantErr: ErrInvalidOffsets,
			errHas:  "maxOffsetsPerTrigger is -1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := PlanBatch(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("error = %v, want %v containing %q", err, tt.wantErr, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rangesString(plan.Ranges); got != tt.wantRanges {
				t.Errorf("ranges = %q, want %q", got, tt.wantRanges)
			}
			if !equalOffsets(plan.End, tt.wantEnd) {
				t.Errorf("end = %v, want %v", plan.End, tt.wantEnd)
			}
			if len(plan.Warnings) != len(tt.wantWarn) {
				t.Fatalf("warnings = %q, want %d", plan.Warnings, len(tt.wantWarn))
			}
			for i, w := range tt.wantWarn {
				if !strings.Contains(plan.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, plan.Warnings[i], w)
				}
			}
		})
	}
}

// TestPlanBatchInvariants checks, over many shapes, that the ranges tile
// exactly [start, end) of every partition, that the cap holds and is used in
// full, and that MinPartitions is met when possible.
func TestPlanBatchInvariants(t *testing.T) {
	for seed := range 2000 {
		n := 1 + seed%7
		prev, latest, earliest := Offsets{}, Offsets{}, Offsets{}
		var backlog int64
		for p := range int32(n) {
			from := int64((seed * (int(p) + 3)) % 50)
			size := int64((seed*int(p+1)*7919)%97) * int64(1+seed%5)
			prev.Set("t", p, from)
			earliest.Set("t", p, 0)
			latest.Set("t", p, from+size)
			backlog += size
		}
		cap := int64(seed % 300)
		minParts := seed % 23
		plan, err := PlanBatch(PlanInput{Prev: prev, Earliest: earliest, Latest: latest, MaxOffsetsPerTrigger: cap, MinPartitions: minParts, FailOnDataLoss: true})
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		pos := prev.Clone()
		for _, r := range plan.Ranges {
			if r.From >= r.Until || r.From != pos["t"][r.Partition] {
				t.Fatalf("seed %d: range %s does not continue at %d", seed, r, pos["t"][r.Partition])
			}
			pos["t"][r.Partition] = r.Until
			total += r.Len()
		}
		if !equalOffsets(pos, plan.End) {
			t.Fatalf("seed %d: ranges end at %v, plan.End is %v", seed, pos, plan.End)
		}
		want := backlog
		if cap > 0 {
			want = min(cap, backlog)
		}
		if total != want {
			t.Fatalf("seed %d: batch has %d offsets, want %d (cap %d, backlog %d)", seed, total, want, cap, backlog)
		}
		if minParts > 0 && int64(minParts) <= total && len(plan.Ranges) < minParts {
			t.Fatalf("seed %d: %d ranges, want at least %d", seed, len(plan.Ranges), minParts)
		}
		if !slices.IsSortedFunc(plan.Ranges, func(a, b Range) int {
			return cmpRange(a, b)
		}) {
			t.Fatalf("seed %d: ranges not sorted: %v", seed, plan.Ranges)
		}
	}
}

func cmpRange(a, b Range) int {
	if c := strings.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	if a.Partition != b.Partition {
		return int(a.Partition - b.Partition)
	}
	return int(a.From - b.From)
}

func rangesString(rs []Range) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, " ")
}

func BenchmarkPlanBatch(b *testing.B) {
	prev, earliest, latest := Offsets{}, Offsets{}, Offsets{}
	for _, topic := range []string{"logs", "events"} {
		for p := range int32(64) {
			prev.Set(topic, p, int64(p)*1000)
			earliest.Set(topic, p, 0)
			latest.Set(topic, p, int64(p)*1000+int64(p*p)*37+5)
		}
	}
	in := PlanInput{Prev: prev, Earliest: earliest, Latest: latest, MaxOffsetsPerTrigger: 100000, MinPartitions: 256, FailOnDataLoss: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PlanBatch(in); err != nil {
			b.Fatal(err)
		}
	}
}
