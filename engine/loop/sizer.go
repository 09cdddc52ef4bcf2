package loop

// FirstBatchGroups is the number of groups a record is assumed to make
// before a batch was measured.
const FirstBatchGroups = 32

// Sizer caps the records of the next batch so that the groups of a batch
// fit BatchBytes. It learns the memory a record costs from the last batch
// that output: the groups it produced (distinct keys for an aggregation,
// output rows without one) and their exchange bytes. Groups grow at most
// linearly with a batch's records, so a cap derived from a smaller batch
// errs on the safe side; a batch planned before a sudden change in the data
// (many more distinct keys per record) can still take more. A Sizer is a
// value owned by one goroutine (Core's).
type Sizer struct {
	// BatchBytes is what one batch's groups may take from map to sink; 0
	// means no cap.
	BatchBytes int64
	// GroupBytes is the memory a group takes besides its encoded key and
	// value in the exchange, which count twice: in the exchange buckets and
	// again in the final aggregation and the staged state write.
	GroupBytes int64

	perRecord float64 // bytes per record measured; 0 until a batch output
}

// Limit is the most records the next batch may read; 0 means no cap.
func (s *Sizer) Limit() int64 {
	if s.BatchBytes <= 0 {
		return 0
	}
	per := s.perRecord
	if per == 0 {
		per = float64(FirstBatchGroups * s.GroupBytes)
	}
	return max(1, int64(float64(s.BatchBytes)/per))
}

// Observe records a batch of records records that produced groups groups,
// whose exchange buckets took exchangeBytes. An empty batch tells nothing.
func (s *Sizer) Observe(records, groups, exchangeBytes int64) {
	if records <= 0 {
		return
	}
	s.perRecord = float64(groups*s.GroupBytes+2*exchangeBytes) / float64(records)
}
