package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
)

// TestEachPartitionAtOnce: reduceIn's tasks for the state partitions (the
// reduce, then a complete-mode job's rows) run at once: partition 0's
// waits until partition 1's has started, and their records come back in
// partition order although partition 1's returned first. The first error
// cancels the others and is the one returned. Before, the rows of the
// partitions were fetched one partition after another.
func TestEachPartitionAtOnce(t *testing.T) {
	parts := []*clusterpb.StatePartition{{Owner: "s1"}, {Owner: "s2"}}
	started := make(chan struct{})
	recs, err := eachPartition(context.Background(), parts, func(ctx context.Context, i int32, owner string) ([][]byte, error) {
		if i == 1 {
			close(started)
			return [][]byte{[]byte("b1"), []byte("b2")}, nil
		}
		select {
		case <-started:
			return [][]byte{[]byte("a1")}, nil
		case <-time.After(30 * time.Second): // a guard against hanging, not a timing assertion
			return nil, errors.New("partition 1's task did not start while partition 0's ran")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := recs, [][]byte{[]byte("a1"), []byte("b1"), []byte("b2")}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("records %q; want %q", got, want)
	}

	failed := errors.New("partition 1 failed")
	_, err = eachPartition(context.Background(), parts, func(ctx context.Context, i int32, owner string) ([][]byte, error) {
		if i == 1 {
			return nil, failed
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if !errors.Is(err, failed) {
		t.Fatalf("error %v; want %v", err, failed)
	}
}
