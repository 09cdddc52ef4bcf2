// Package cluster will run gostream's workers as a hashicorp/raft group:
// the replicated state machine of members, submitted jobs (their plans),
// per-job offsets and commit logs and the assignment of Kafka partitions and
// state partitions to workers, the gRPC services for tasks and shuffle, and
// the leader as the driver of every job (see DESIGN.md, "Cluster").
//
// It is empty until the cluster issue: today a query runs in one process
// (package engine), built from parts (the plan as protobuf, offset-range
// planning, versioned state) that the cluster is meant to reuse unchanged.
package cluster
