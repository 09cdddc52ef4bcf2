// Package task holds the bodies of a query's tasks, shared by the local
// engine and a cluster worker: the map task (Mapper: reading offset ranges,
// the narrow operators and the partial aggregation into exchange buckets)
// and the reduce task (Reducer: merging a state partition's exchange
// buckets into its state store and committing it at the batch's version).
// It compiles a query's plan (Compile) once per query or job; the caller
// owns the Kafka source, the state stores and the exchange between tasks,
// so the package does no I/O of its own beyond reading the ranges and
// writing the state stores it is given.
package task
