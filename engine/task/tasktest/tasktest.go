// Package tasktest helps tests of the reduce side: it runs an aggregation's
// map side over record values in memory, without Kafka, into the exchange
// buckets a map task sends.
package tasktest

import (
	"testing"

	"github.com/gostream/gostream/operators"
)

// Buckets runs a map task of agg over the record values lines and returns
// its exchange buckets, one per state partition of parts (as many key
// groups as partitions, as in local mode). agg must read
// record values alone (operators.HashAgg.ValueEntry), as word counts do.
func Buckets(tb testing.TB, agg *operators.Aggregation, parts int, lines ...string) [][]byte {
	tb.Helper()
	partial, err := agg.NewPartial()
	if err != nil {
		tb.Fatal(err)
	}
	value, err := partial.ValueEntry()
	if err != nil || value == nil {
		tb.Fatalf("tasktest: the aggregation does not read record values alone: %v", err)
	}
	for _, l := range lines {
		value([]byte(l))
	}
	x, err := operators.PartitionExchange(parts)
	if err != nil {
		tb.Fatal(err)
	}
	return partial.Flush(x, nil)
}
