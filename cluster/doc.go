// Package cluster runs gostream's workers as a hashicorp/raft group: the
// replicated state machine (FSM: members, jobs, each job's batch log and
// assignment), the worker Node that hosts it, and the gRPC Control service
// with its Client. It does not run jobs yet: the batch loop, tasks and the
// shuffle belong to later increments, and it must not touch the engine's
// local checkpoints or state stores.
//
// # One port per worker
//
// A worker listens on one address (--listen) for both Raft and gRPC. A
// small multiplexer reads each new connection's first byte: Raft
// connections, dialed by this package's stream layer, start with 'R' and
// the 16-byte cluster id (a connection from another cluster is closed and
// logged); gRPC connections start with HTTP/2's preface ("PRI ..."). So a
// member has one address, the one --peers gives it, which is at once its
// Raft server address, the address a follower forwards leader-only calls
// to, and an address a client can name in --master.
//
// # Identity
//
// A member's Raft server id is its --name. The cluster id is derived from
// the bootstrap --peers (a hash of the sorted name=address list, as etcd
// derives its cluster id from the initial members), so workers started
// with the same --peers agree on it without talking. The data directory
// holds cluster.json (format, cluster id, worker name, bootstrap peers),
// raft.db (raft-boltdb/v2: log and stable store) and snapshots/ (raft's
// file snapshot store, 2 retained). A worker refuses, before writing
// anything, a data directory of another cluster or another worker. On
// start it says hello to every peer that answers and refuses to start if
// one was given other --peers; Raft's handshake refuses connections
// between clusters in any case.
//
// # State machine
//
// Commands and snapshots are protobuf (proto/cluster.proto). A command
// carries the term it was proposed in and is refused if logged in another,
// so a proposal built on a stale view never applies. Every command is
// idempotent, so a client may retry one after a leader change. A job's
// batch log holds the entries of a local checkpoint's batch log ("offsets
// N" with its ranges, "commit N"), checked by the same rules and trimmed
// the same way (to the last 100 batches once it holds 800 entries), which
// keeps snapshots small; a snapshot is the State message itself.
// Assignments (Kafka partition -> worker; key-group range -> owner and
// standby) carry epochs that grow by one.
//
// # Timeouts
//
// DefaultConfig's Raft timeouts (heartbeat and election 500 ms, leader
// lease 250 ms) let followers notice a lost leader within 0.5-1 s and elect
// another within about 2 s. Pre-vote is on: raft's NetworkTransport
// implements it, so a member that was cut off does not disrupt the group
// when it comes back.
//
// # Concurrency
//
// A Node owns its goroutines (the mux's accept loop and per-connection
// sniffers, the gRPC server, the leadership watcher) and Close stops and
// waits for all of them. The FSM has one lock; the client pool has one;
// neither is held while the other is taken.
package cluster
