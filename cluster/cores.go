package cluster

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"time"
)

// A worker's cores (Config.Cores) bound its map tasks' aggregating workers
// and, with Config.SetGOMAXPROCS, its GOMAXPROCS. By default the machine's
// cores are shared among the members that run on it: three workers on a
// 2-core machine take one core each, instead of running 6 Ps that preempt
// each other; a worker alone on its host takes all of them.

// MaxCores bounds Config.Cores (gostream worker --cores).
const MaxCores = 4096

// machineCores is the cores the process had at its start: GOMAXPROCS's
// default, that is the machine's CPUs, the container's CPU limit when
// lower, or the GOMAXPROCS environment variable when set. It is read
// before anything in the process sets GOMAXPROCS.
var machineCores = runtime.GOMAXPROCS(0)

// lookupTimeout bounds the resolution of a member's host name.
const lookupTimeout = 2 * time.Second

// sharedCores is the cores of each of local members (at least one: this
// worker) sharing machine cores, at least one each.
func sharedCores(machine, local int) int {
	return max(1, machine/max(1, local))
}

// hostIP resolves host names; net.DefaultResolver.LookupIPAddr in a Node.
type hostIP func(ctx context.Context, host string) ([]net.IPAddr, error)

// localHosts tells which members' addresses run on this machine: a host
// that is a loopback address, or resolves to one or to one of this
// machine's interface addresses (ifaces). A host that does not resolve
// (within lookupTimeout) is not here.
type localHosts struct {
	lookup hostIP
	ifaces []net.Addr
}

// here tells whether the host of addr (host:port) runs on this machine.
func (l localHosts) here(ctx context.Context, addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	var ips []net.IPAddr
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IPAddr{{IP: ip}}
	} else {
		ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		ips, err = l.lookup(ctx, host)
		cancel()
		if err != nil {
			return false
		}
	}
	for _, ip := range ips {
		if ip.IP.IsLoopback() {
			return true
		}
		for _, a := range l.ifaces {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip.IP) {
				return true
			}
		}
	}
	return false
}

// count is how many of addrs, this worker's own (self) included, run on
// this machine; self always does.
func (l localHosts) count(ctx context.Context, self string, addrs []string) int {
	local := 1
	for _, a := range addrs {
		if a != self && l.here(ctx, a) {
			local++
		}
	}
	return local
}

// memberAddrs is the addresses of the group's members: the state
// machine's, or before it holds any (a group not yet initialized), the
// bootstrap peers'.
func (n *Node) memberAddrs() []string {
	var addrs []string
	for _, m := range n.fsm.Members() {
		addrs = append(addrs, m.Address)
	}
	if addrs == nil {
		for _, p := range n.peers {
			addrs = append(addrs, p.Addr)
		}
	}
	return addrs
}

// updateCores sets the worker's cores (Node.Cores) from Config.Cores, or by
// default from the members that run on this machine, sets GOMAXPROCS with
// Config.SetGOMAXPROCS, and logs a change of its cores or of the members
// here. It runs at start, then after membership changes on the member
// watch: one call at a time.
func (n *Node) updateCores(ctx context.Context) {
	cores, local := n.cfg.Cores, 0
	if cores == 0 {
		ifaces, err := net.InterfaceAddrs()
		if err != nil {
			n.log.Warn("cluster: listing this machine's addresses failed; only loopback members count as sharing its cores", "err", err)
		}
		local = localHosts{lookup: n.lookupHost, ifaces: ifaces}.count(ctx, n.cfg.Listen, n.memberAddrs())
		cores = sharedCores(machineCores, local)
	}
	if int(n.cores.Swap(int32(cores))) == cores && local == n.coresLocal {
		return
	}
	n.coresLocal = local
	if n.cfg.SetGOMAXPROCS {
		runtime.GOMAXPROCS(cores)
	}
	if local == 0 {
		n.log.Info(fmt.Sprintf("cluster: this worker uses %d cores (--cores); the machine has %d", cores, machineCores))
		return
	}
	n.log.Info(fmt.Sprintf("cluster: this worker uses %d of %d cores: %d members run on this machine", cores, machineCores, local))
}

// Cores is the cores the worker uses (see Config.Cores).
func (n *Node) Cores() int { return int(n.cores.Load()) }
