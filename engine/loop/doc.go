// Package loop is the micro-batch driver loop of DESIGN.md, shared by the
// local engine and the cluster's Raft leader: one copy of its decisions,
// two deployments.
//
// Core holds the loop's decisions and does no I/O, in the manner of etcd
// raft's RawNode: the caller feeds it events (offsets listed, a batch
// mapped, its output written, its commit logged, a timer fired, a failure)
// with the time they happened, and it answers with the actions to take
// (list offsets, log an offsets entry, map, output, sync and commit a batch,
// follow the partitions, wait, report progress, stop). Its scripts in
// testdata pin every decision exactly.
//
// Run executes a Core's actions over small interfaces: the batch log
// (Log: a checkpoint's file locally, the Raft log in a cluster), the tasks
// (Executor: goroutines locally, gRPC to workers in a cluster), the source's
// listing and following (Source) and progress (Reporter). The package
// imports kafkasrc for offsets and batch planning and nothing of the
// engine; it must not touch state, sinks or the network itself.
package loop
