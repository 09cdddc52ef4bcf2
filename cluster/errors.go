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
	// ErrClosed reports a call on a closed Node.
	ErrClosed = errors.New("cluster: node closed")
)
