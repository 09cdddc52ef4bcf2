package task

// Aggregators is how many partial aggregators m keeps for its runs: as
// many as its busiest run used.
func Aggregators(m *Mapper) int {
	m.partials.mu.Lock()
	defer m.partials.mu.Unlock()
	return len(m.partials.free)
}
