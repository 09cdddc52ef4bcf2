// Package engine is gostream's public API and its micro-batch driver.
//
// It mirrors Spark Structured Streaming: a Session reads a Kafka stream into
// a DataFrame, DataFrame operations (Select, Filter, GroupBy().Count(), ...)
// build a logical plan as data (proto/planpb), and WriteStream().Start runs
// it as a StreamingQuery that plans offset ranges, runs map tasks, exchanges
// partial aggregates, commits versioned state and writes each batch to a sink
// exactly once (for idempotent sinks), following the protocol in DESIGN.md.
//
// Errors in building a DataFrame are deferred: each DataFrame carries the
// first error of its lineage and Start returns it, the way Spark reports
// analysis errors when the query starts.
//
// The engine owns the checkpoint directory of each query and the goroutines
// of its tasks; it does not own the Kafka topics (kafkasrc) or the state
// store's storage format (state).
package engine
