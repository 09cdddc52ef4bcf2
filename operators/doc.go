// Package operators holds gostream's physical operators: values and schemas,
// compiled expressions (cast, split, comparisons, conditionals, Spark's
// string, JSON and timestamp functions by their Spark names, registered Go
// functions), the narrow row pipeline (project, filter, explode), hash
// aggregation in its partial (map-side) and final (reduce-side) forms, and
// the exchange encoding that carries partial aggregates between them.
//
// Operators do no I/O: they never touch Kafka, the state store's storage or
// the network. Compiled operators are not safe for concurrent use; every task
// compiles its own instance from the plan (compiling is cheap). Rows passed
// down a pipeline are borrowed: a receiver that keeps a row past the call
// must copy it (Row.Clone).
package operators
