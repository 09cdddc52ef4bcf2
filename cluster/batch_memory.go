package cluster

import (
	"fmt"
	"strconv"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/proto/planpb"
)

// batchSizer caps a job's batches as local mode caps a query's, with the
// job's memory budget (options["memory"], bytes, as the plan records
// WriteStream().Memory and submit's --memory; none: engine.DefaultMemory):
// the groups of one batch fit the budget's share for a batch, so that the
// leader, which gathers a batch's changed rows, and each owner, which
// merges its share of them, hold a batch within it. It is for jobs with an
// aggregation or dropDuplicates, whose outputs count the groups it learns
// from.
func batchSizer(options map[string]string, mode planpb.OutputMode) (loop.Sizer, error) {
	var budget int64
	if s := options["memory"]; s != "" {
		var err error
		if budget, err = strconv.ParseInt(s, 10, 64); err != nil || budget < engine.MinMemory {
			return loop.Sizer{}, fmt.Errorf("its memory budget %q is not a size of at least %d bytes (submit it again with --memory)", s, engine.MinMemory)
		}
	}
	return engine.BatchSizer(budget, mode != planpb.OutputMode_COMPLETE), nil
}
