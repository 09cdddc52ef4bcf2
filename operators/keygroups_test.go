package operators

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// partitions is PartitionExchange(parts), which must succeed.
func partitions(tb testing.TB, parts int) *Exchange {
	tb.Helper()
	x, err := PartitionExchange(parts)
	if err != nil {
		tb.Fatal(err)
	}
	return x
}

// bucketKeys decodes the group keys of a count(*) exchange bucket.
func bucketKeys(t *testing.T, bucket []byte) []string {
	t.Helper()
	var keys []string
	for len(bucket) > 0 {
		kl, n := binary.Uvarint(bucket)
		if n <= 0 || uint64(len(bucket)-n) < kl {
			t.Fatalf("bad key length in bucket")
		}
		keys = append(keys, string(bucket[n:n+int(kl)]))
		bucket = bucket[n+int(kl):]
		if _, n = binary.Uvarint(bucket); n <= 0 {
			t.Fatalf("bad count in bucket")
		}
		bucket = bucket[n:]
	}
	return keys
}

// TestPartitionExchangeKeepsLayout checks that with as many key groups as
// partitions, Flush puts every group where the layout of existing local
// checkpoints has it: in partition xxhash64(key) % partitions.
func TestPartitionExchangeKeepsLayout(t *testing.T) {
	var lines []string
	for i := range 2000 {
		lines = append(lines, fmt.Sprintf("w%d x%d", i, i%7))
	}
	for _, parts := range []int{1, 2, 3, 4, 8, 16, 200} {
		_, partial, entry := wordCountPartial(t)
		for _, l := range lines {
			if err := entry(kafkaRow(l, 0)); err != nil {
				t.Fatal(err)
			}
		}
		buckets := partial.Flush(partitions(t, parts), nil)
		if len(buckets) != parts {
			t.Fatalf("%d partitions: %d buckets", parts, len(buckets))
		}
		groups := 0
		for p, b := range buckets {
			for _, k := range bucketKeys(t, b) {
				groups++
				if want := int(xxhash.Sum64([]byte(k)) % uint64(parts)); p != want {
					t.Fatalf("%d partitions: key %q in bucket %d, its checkpoints' layout has it in %d", parts, k, p, want)
				}
			}
		}
		if groups != 2007 {
			t.Fatalf("%d partitions: %d groups in the buckets, want 2007", parts, groups)
		}
	}
	// Pinned: the partitions of a few words in checkpoints with 4 and 200
	// shuffle partitions (a word's key is 0x01 then its bytes).
	for _, c := range []struct {
		word      string
		parts     int
		partition int
	}{
		{"hello", 4, 2}, {"world", 4, 3}, {"", 200, 160}, {"ERROR", 200, 33},
	} {
		if got := partitions(t, c.parts).Partition([]byte("\x01" + c.word)); got != c.partition {
			t.Errorf("word %q with %d partitions: partition %d, want %d", c.word, c.parts, got, c.partition)
		}
	}
}

// TestExchangeKeyGroupRanges routes keys to the partition owning their key
// group's range.
func TestExchangeKeyGroupRanges(t *testing.T) {
	ranges := []KeyGroupRange{{0, 40}, {40, 41}, {41, 100}, {100, 128}}
	x, err := NewExchange(128, ranges)
	if err != nil {
		t.Fatal(err)
	}
	if x.Partitions() != 4 || x.KeyGroups() != 128 {
		t.Fatalf("Partitions %d, KeyGroups %d; want 4, 128", x.Partitions(), x.KeyGroups())
	}
	seen := make([]int, len(ranges))
	for i := range 10000 {
		k := fmt.Appendf(nil, "\x01w%d", i)
		g := KeyGroup(k, 128)
		if g != int(xxhash.Sum64(k)%128) {
			t.Fatalf("KeyGroup(%q, 128) = %d, want xxhash64 %% 128 = %d", k, g, xxhash.Sum64(k)%128)
		}
		p := x.Partition(k)
		if r := ranges[p]; g < r.First || g >= r.End {
			t.Fatalf("key %q of group %d went to partition %d, which owns [%d, %d)", k, g, p, r.First, r.End)
		}
		seen[p]++
	}
	for p, n := range seen {
		if n == 0 {
			t.Errorf("no key went to partition %d", p)
		}
	}
}

func TestNewExchangeRefuses(t *testing.T) {
	for _, c := range []struct {
		name   string
		groups int
		ranges []KeyGroupRange
		want   string
	}{
		{"no groups", 0, nil, "0 key groups"},
		{"too many groups", MaxKeyGroups + 1, []KeyGroupRange{{0, MaxKeyGroups + 1}}, "key groups: want 1 to"},
		{"no partitions", 4, nil, "own key groups [0, 0) of 4"},
		{"gap", 8, []KeyGroupRange{{0, 3}, {4, 8}}, "partition 1 owns key groups [4, 8)"},
		{"overlap", 8, []KeyGroupRange{{0, 5}, {4, 8}}, "partition 1 owns key groups [4, 8)"},
		{"empty", 8, []KeyGroupRange{{0, 4}, {4, 4}, {4, 8}}, "partition 1 owns key groups [4, 4)"},
		{"not from 0", 8, []KeyGroupRange{{1, 8}}, "partition 0 owns key groups [1, 8)"},
		{"short", 8, []KeyGroupRange{{0, 4}, {4, 7}}, "own key groups [0, 7) of 8"},
		{"beyond", 8, []KeyGroupRange{{0, 4}, {4, 9}}, "partition 1 owns key groups [4, 9)"},
	} {
		_, err := NewExchange(c.groups, c.ranges)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
	if _, err := PartitionExchange(0); err == nil {
		t.Error("PartitionExchange(0) succeeded")
	}
}
