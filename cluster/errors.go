package cluster

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them with
// the context a user needs: which worker, which address, which job.
var (
	// ErrConfig reports a bad Config or command-line value.
	ErrConfig = errors.New("cluster: bad configuration")
	// ErrDataDir reports a data directory that cannot be used: damaged,
	// another cluster's or another worker's. Nothing in it was changed.
	ErrDataDir = errors.New("cluster: data directory refused")
	// ErrPeersDisagree reports a peer that was started with other --peers.
	ErrPeersDisagree = errors.New("cluster: peers disagree")
	// ErrRefused reports a command the state machine refused; the state is
	// unchanged.
	ErrRefused = errors.New("cluster: command refused")
	// ErrStaleTerm reports a command or request from a term that has passed.
	ErrStaleTerm = errors.New("cluster: stale term")
	// ErrNoLeader reports that no leader is known.
	ErrNoLeader = errors.New("cluster: no leader")
	// ErrUnreachable reports that no member answered at any address tried.
	ErrUnreachable = errors.New("cluster: no member reachable")
	// ErrStaleEpoch reports a task or shuffle of an assignment epoch that
	// is not the job's current one, or for a partition the member does not
	// own in it.
	ErrStaleEpoch = errors.New("cluster: stale assignment epoch")
	// ErrUnknownJob reports a job the cluster does not know.
	ErrUnknownJob = errors.New("cluster: unknown job")
	// ErrShuffleRefused reports a shuffle stream the receiver refused or
	// dropped: truncated, damaged, superseded or late.
	ErrShuffleRefused = errors.New("cluster: shuffle refused")
	// ErrProtocol reports a peer's answer that breaks the protocol.
	ErrProtocol = errors.New("cluster: protocol violation")
	// ErrMemberExists reports a joining worker whose name or address a
	// member has already.
	ErrMemberExists = errors.New("cluster: member exists")
	// ErrLastMember reports a removal that would leave the group without
	// members.
	ErrLastMember = errors.New("cluster: last member")
	// ErrQuorum reports a removal that would leave fewer live members than
	// a quorum of the remaining group.
	ErrQuorum = errors.New("cluster: no quorum")
	// ErrOnlyCopy reports a removal that would lose the only current copy
	// of a job's state partition.
	ErrOnlyCopy = errors.New("cluster: only copy of state")
	// ErrUnknownMember reports a name that is not a member.
	ErrUnknownMember = errors.New("cluster: unknown member")
	// ErrRemoved reports a worker that was removed from its group: its
	// data directory must not run again.
	ErrRemoved = errors.New("cluster: worker removed")
	// ErrClosed reports a call on a closed Node.
	ErrClosed = errors.New("cluster: node closed")
)
