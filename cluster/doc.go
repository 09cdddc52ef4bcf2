// Package cluster runs gostream's workers as a hashicorp/raft group: the
// replicated state machine (FSM: members, jobs, each job's batch log and
// assignment), the worker Node that hosts it, and the gRPC Control service
// with its Client, the Task service that runs a job's map tasks, the
// Shuffle service that carries map tasks' partial
// aggregates to the owners of the state partitions, the StatePartitions
// service that reduces them into the workers' state stores and replicates
// each batch to a standby, and the leader's job
// manager, which runs a Driver per running job against the job's BatchLog
// in the Raft log. It must not touch the engine's local checkpoints or
// state stores; a worker's own state stores live in its data directory.
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
// holds cluster.json (format, cluster id, worker name, bootstrap peers;
// for a worker that joined a running group with --join, its --join and
// the log index of its AddMember instead of peers; removed, once it was
// removed), raft.db (raft-boltdb/v2: log and stable store) and snapshots/
// (raft's file snapshot store, 2 retained). A worker refuses, before
// writing anything, a data directory of another cluster, of another
// worker, or of a worker removed from its group.
//
// # Membership
//
// A worker started with --join learns the cluster id from a member,
// starts Raft with an empty log and asks to be added (Control.Join); the
// leader logs AddMember, then raft.AddVoter. `gostream cluster remove`
// (Control.RemoveMember) logs RemoveMember, then raft.RemoveServer; a
// leader removing itself hands its leadership over first. The state
// machine records each removal with its log index: a worker that applies
// its own removal fails (Node.Failed, ErrRemoved), and one that was down
// learns it from a member's Hello when it starts again.
//
// # Peers that disagree
//
// Raft's handshake refuses connections between clusters in any case, so
// workers given other --peers never form one group. Beyond that, a worker
// whose --peers disagree with a peer's stops with ErrPeersDisagree naming
// both lists, whatever the start order, by this rule: a worker that is not
// yet part of a formed group (it has seen no leader, and its log holds no
// Init, which a quorum committed) stops as soon as it learns of the
// disagreement; a member of a formed group does not stop, it refuses the
// other and logs a warning. It learns of it by saying hello: on start to
// every peer that answers (Start returns the error), then every
// helloInterval until it is part of a formed group (Node.Failed closes),
// and when a peer's hello reaches it (Failed closes). So two fresh workers
// started at the same instant, that missed each other's start-up hello,
// both stop within a fraction of a second; a worker started with other
// --peers than a running group's stops, and the group runs on. At a first
// start of a whole group with one worker misconfigured, the others may
// stop too if they had not elected a leader yet: restart them with the
// same --peers once the odd one is fixed (their data directories are
// valid).
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
// standby) carry epochs that grow by one, planned by nextAssignment
// (assign.go: sticky, evened out, state moved standby first), each logged
// with the reason it was planned; a job keeps its last 20 epoch changes.
// The state machine records, per state partition, from which committed
// batch its standby holds a full copy (standby_ready_from), so a standby
// becomes the owner only with a current copy.
//
// # Timeouts
//
// DefaultConfig's Raft timeouts (heartbeat and election 300 ms, leader
// lease 250 ms) let the followers of a leader that died elect another
// within about 0.6-0.9 s: each waits a random 300-600 ms without hearing
// from it, and the first to campaign gets no pre-vote from the other until
// that one stops hearing a leader too. Lower would find a dead leader
// sooner, but depose a live one whose heartbeats stall that long (a
// stalled machine or network, a paused process). Pre-vote is on: raft's
// NetworkTransport implements it, so a member cut off campaigns without
// raising its term, and when it comes back it disrupts no one.
//
// # Leadership
//
// A leader cut off from a majority (or whose peers are paused) steps
// down after the lease; a member that lost the leadership, or that knows
// no leader for 2 s (then every 30 s), asks every other member for its
// MemberInfo and logs why: a newer term began without it (it was cut off
// or paused), or it reaches too few members for a majority, naming those
// it cannot reach; it makes no progress meanwhile. Its Status answers at
// once with its own view: whom it reaches, and no leader. Each member
// keeps the last 20 leader changes it saw, with that reason or, for its
// own election, how long no leader had been heard from; Status returns
// them. Output to the leader's host (a jsonl sink's file) is fenced by
// JobRun.Leading, a quorum check with a lease, since no Raft term fences
// a local file.
//
// # Shuffle
//
// A map task streams its partials for one state partition to the
// partition's owner over one client-streaming Push call (ShuffleWriter).
// The stream's open message carries the task's identity (job, batch,
// partition, task, attempt) and fencing (cluster id, the planning driver's
// Raft term, the assignment epoch); the owner refuses another cluster, an
// older term, an unknown job, another epoch or a partition it does not own
// in that epoch, with a gRPC status naming which. Then come data messages,
// which cut a byte stream of versioned blocks (a version byte, a length,
// an opaque exchange bucket of operators' HashAgg.Flush) at any byte, and
// an end message with the block count, byte count and CRC-32C, so a stream
// cut short or damaged is refused (DataLoss) and its data dropped. When
// the end message arrives, the owner checks the open message's fencing
// again against its current view, before the attempt becomes visible to
// Inbox.Take: a stream during which the Raft term grew, or the job's
// assignment moved to another epoch, is refused then (ErrStaleTerm,
// ErrStaleEpoch) and its data dropped. So an attempt counts only if its
// fencing held both when it opened and when it ended; a change applied
// between that last check and the attempt's completion (microseconds, no
// lock held across them) is not seen by it. The owner's Inbox keeps
// complete attempts until the partition's reduce takes them
// (Inbox.Take): only a task's latest attempt counts (of the latest
// epoch, the highest number: the driver numbers a task's tries in each
// epoch from 1), and the reduce gets exactly one complete attempt per map
// task. A reduce stops waiting, for its partials or its standby, once its
// epoch has passed on the owner, so the next epoch's attempts are taken. The Inbox holds at most
// Config.ShuffleMemory of received bytes; beyond it, streams stop reading,
// and HTTP/2's flow control (4 MiB windows per stream) stops their
// senders. Data messages travel in pooled buffers through a codec of their
// own (shuffleCodec), which every call between workers uses: it encodes
// and decodes their other messages in pooled buffers that, unlike gRPC's,
// are not zeroed first.
//
// # State partitions
//
// A worker keeps each job's state in one Pebble store,
// DataDir/jobs/NAME/state (changelog mode, labeled with the cluster id,
// the job and its key groups, so another cluster's or job's store is
// refused), holding the state partitions it owns or stands by for, each
// under its first key group as the store's partition number: a
// partition's keys stay as they are wherever it moves. With as many key
// groups as partitions this is a local checkpoint's layout. PlaceState
// places partitions; Config.StateReplicas (--state-replicas) says whether
// they get a standby.
//
// Reduce, on a partition's owner, checks the request's fencing like a
// shuffle's, takes one complete attempt of each map task's partials from
// the Inbox, and merges them through the engine's reduce task
// (engine/task.Reducer), which checks the fencing again right before the
// commit at version batch: a request whose term or epoch passed in
// between writes nothing. The batch's changelog record (each changed
// group's key and state: the state package's record format) then goes to
// the partition's standby over a Replicate stream, cut into records of
// about 1 MiB; the standby checks the fencing (it must be the
// partition's standby in the current epoch), answers needs_copy to a
// record that would leave a gap (its partition must be at batch-1, or at
// batch already: then it writes nothing), takes the records, checks the
// fencing again and commits them at the same version as they are, one
// durable write (state.CommitRecords: the owner's key count at the batch
// comes in the end message; the records reach the standby's memory when
// the partition is next used, as on a promotion, or when a fold is due,
// which checks that count). To needs_copy the owner
// answers with the whole partition at version batch (a full copy, the
// same stream with ReplicateOpen.full), which the standby stages over its
// copy with state.Copy (the keys the copy lacks deleted) and commits at
// batch in one write: a new or lagging standby is current after one
// reduce, and a copy cut short leaves its old copy as it was. Reduce
// answers the changed groups (update mode) once the batch is committed
// and, in complete mode, streams every group the partition holds while
// the standby takes the batch (a full copy's scan waits for theirs);
// only once the standby holds the batch does it answer done, with the
// counts, and forget the batch's partials: the driver uses what came
// before only with done. A batch that runs again over a partition at
// version batch (the driver failed before "commit N") is not merged
// again: its groups' states come from the store, and go to the standby
// again, which so catches up if its replication had failed. A
// partition's requests take turns; a reduce takes its partials before the partition, and fails at
// once (Aborted: the driver maps the batch again) if a map task's are
// missing, since the driver reduces only once every push was taken: they
// went to a process of the owner that is gone. One that fails or panics answers an error naming the job,
// batch, partition and worker, closes the partition's store (reopened at
// its durable version by the next request), and the worker goes on. A
// worker closes the stores of partitions the job's epoch no longer gives
// it when a request of the job reaches it; their data stay on disk at
// their version, served by no request, until the partition comes back.
//
// # Map tasks
//
// The driver runs a batch's map tasks with Task.Map, one call per task
// attempt, on the worker the epoch's assignment gives the ranges' Kafka
// partitions to. The request carries the task's identity (job, batch,
// task, attempt), its offset ranges and the fencing of a shuffle stream
// (cluster id, the planning driver's Raft term, the assignment epoch),
// checked the same way (checkFence) when the call arrives and again before
// its partials are pushed. The worker decodes the job's plan (Job.Plan, a
// serialized planpb.Query) once per job and keeps, per job, a Kafka source
// whose readers follow the partitions from where the last task ended
// (sticky assignment: the next batch's records are in memory when its
// task comes) when the job's trigger runs on once caught up (default,
// processing time); a job whose trigger ends (available-now, once) reads
// record values alone instead, as local mode does (task.MapConfig.ReadValues).
// It keeps a task.Mapper per assignment epoch and number of cores, whose exchange
// routes each group by its key group (xxhash64(key) % Job.KeyGroups) to
// the state partition owning the group's range. The task runs the
// engine's map body (engine/task), the job's tasks on a worker one at a
// time (the batch's timestamp is set on the job's plan), with as many
// aggregating workers as the worker's cores (task.MapConfig.Aggregators,
// Config.Cores: by default the machine's cores shared among the members
// that run on it), and pushes each state partition's partials, an empty stream
// included, to the partition's owner, overlapping the next task's map; it
// answers once every owner took its stream. A failing or panicking task
// returns an error naming the job, batch, task and worker (a panic's stack
// goes to the worker's log); the worker runs on. Config.MapMemory bounds a
// job's map side on a worker: half fetched ahead, half partial
// aggregation.
//
// A job with a dropDuplicates runs as an aggregating one does: its map
// tasks push each key's first row to the key's state partition, whose
// Reduce (engine/task.DedupReducer) keeps the rows of keys its state has
// not seen, stores and replicates their keys, and answers the rows
// (ReduceRows) for the driver to write. A job with neither has no state
// partitions to push to: its map task (Task.MapRows) streams its ranges'
// output rows back to the driver instead, each range's in offset order,
// in messages of about 1 MiB, and the driver writes a batch's rows in its
// ranges' order, so a re-run batch writes the same rows.
//
// # Jobs
//
// A job is registered (RegisterJob: its plan, checked by the leader with
// engine.CheckPlan, so a plan calling a function the leader does not have
// is refused then, as is any job while a reachable member registered other
// jobs or functions than the leader, engine.Registered) and RUNNING until
// SetJobState ends it: STOPPED by a
// user (StopJob), FAILED with its driver's error, FINISHED when its
// trigger ran out. Registering it again with the same plan makes it
// RUNNING again, from its batch log; another plan is refused while it
// runs, and afterwards unless only its tunables differ (the same
// engine fingerprint).
//
// The leader's job manager runs one Driver run per RUNNING job, in the
// leader's term: on gaining the leadership it first waits until the state
// machine holds every committed entry (a barrier), then starts them; on
// losing it, it stops them all and waits. A run's BatchLog logs its
// entries in the run's term, so the appends of a run whose leadership
// ended are refused (ErrStaleTerm) even if this member leads again. The
// leader keeps each job's last 100 progress reports (JobRun.Report) for
// Jobs and Watch; a Watch stream ends with Unavailable when the leadership
// moves, and the Client follows the new leader from the last report it
// got.
//
// The leader also keeps which members are down (liveness): it probes each
// other member every 200 ms, and at once when it becomes the leader or the
// members change, and holds one down once it has not answered
// for Config.DownAfter, whether it refuses (killed) or hangs (paused). A
// driver plans a new epoch when its run starts, before each batch's map (a
// worker back or joined, a move's second step, a new Kafka partition) and
// when a batch fails because a worker is down: it cancels the batch's
// tasks that involve that worker, logs an epoch without it (its Kafka
// partitions to live workers, its state partitions to their standbys) and
// runs the batch again with the same ranges in that epoch. A batch whose
// only current copy of a state partition is on a worker that is down
// waits for it.
//
// # Concurrency
//
// A Node owns its goroutines (the mux's accept loop and per-connection
// sniffers, the gRPC server, the leadership and liveness watchers and the
// liveness probes, the hello loop of a
// node not yet part of a formed group, the map tasks' readers, workers and
// pushes, and the job sources' followers) and Close stops and waits for
// all of them, and the job manager's loop, which stops and waits for its
// runs; it cancels running map tasks and waits for them before it closes
// their sources, then it closes the state stores, once their requests are
// done. The FSM, the client pool, the Inbox, the job manager, the map
// jobs, the liveness view and a job driver's current epoch have one lock
// each, and so do the state stores; none is held while another is taken.
// A state partition's lock is held through the request that uses it, and
// a job driver's epoch lock through an epoch change, while those are taken
// (a reduce reaches the standby through the client pool; an epoch change
// reads the liveness view and the FSM).
package cluster
