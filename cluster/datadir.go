package cluster

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gostream/gostream/internal/fsutil"
)

// Peer is one member of the group a worker bootstraps with.
type Peer struct {
	Name string // the member's Raft server id, e.g. "s1"
	Addr string // host:port of its Raft and gRPC traffic
}

// ParsePeers parses --peers, "s1=host:port,s2=host:port,...", into peers
// sorted by name. Names and addresses must be unique.
func ParsePeers(s string) ([]Peer, error) {
	var peers []Peer
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, addr, ok := strings.Cut(item, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%w: --peers item %q: want NAME=HOST:PORT, e.g. s1=127.0.1.1:7077", ErrConfig, item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: --peers item %q: %w", ErrConfig, item, err)
		}
		peers = append(peers, Peer{Name: name, Addr: addr})
	}
	if len(peers) == 0 {
		return nil, fmt.Errorf("%w: --peers is empty: want NAME=HOST:PORT,... naming every worker", ErrConfig)
	}
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	for i := 1; i < len(peers); i++ {
		if peers[i].Name == peers[i-1].Name {
			return nil, fmt.Errorf("%w: --peers names %s twice", ErrConfig, peers[i].Name)
		}
	}
	for i, p := range peers {
		for _, q := range peers[i+1:] {
			if p.Addr == q.Addr {
				return nil, fmt.Errorf("%w: --peers gives %s and %s the same address %s", ErrConfig, p.Name, q.Name, p.Addr)
			}
		}
	}
	return peers, nil
}

// formatPeers is the canonical text of peers sorted by name.
func formatPeers(peers []Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.Name + "=" + p.Addr
	}
	return strings.Join(parts, ",")
}

// clusterIDOf derives a group's id from its bootstrap peers, as etcd derives
// a cluster id from its initial members: workers started with the same
// --peers agree on it without talking, and a worker given other --peers, or
// another group's data directory, is told apart.
func clusterIDOf(peers []Peer) [clusterIDLen]byte {
	sum := sha256.Sum256([]byte("gostream cluster\x00" + formatPeers(peers)))
	return [clusterIDLen]byte(sum[:clusterIDLen])
}

// identity is a worker's data directory's identity file, identityName: which
// cluster and which member the directory belongs to.
type identity struct {
	Format    int    `json:"format"`
	ClusterID string `json:"clusterId"` // hex
	Name      string `json:"name"`
	Peers     string `json:"peers"` // the bootstrap peers, formatPeers; "" for a worker that joined
	// Join is the --join a worker that joined a running group was started
	// with, and JoinIndex the log index of its AddMember.
	Join      string `json:"join,omitempty"`
	JoinIndex uint64 `json:"joinIndex,omitempty"`
	// Removed is set once the worker learned that it was removed from the
	// group: the directory must not run again.
	Removed bool `json:"removed,omitempty"`
}

const (
	identityName   = "cluster.json"
	identityFormat = 1
	raftDBName     = "raft.db"   // the boltdb Raft log and stable store
	snapshotsName  = "snapshots" // raft's file snapshot store
)

// readIdentity checks, without writing anything, that dir may be the data
// directory of worker name in the group of peers. It returns the stored
// identity, or nil for a directory that is new or empty. peers may be nil
// to take them from the directory.
func readIdentity(dir, name string, peers []Peer) (*identity, error) {
	raw, err := os.ReadFile(filepath.Join(dir, identityName))
	if errors.Is(err, fs.ErrNotExist) {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			return nil, fmt.Errorf("%w: %s is not empty and has no %s: it is not a gostream worker's data directory (use an empty or new directory)", ErrDataDir, dir, identityName)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	var id identity
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil || id.Format != identityFormat || id.Name == "" || id.ClusterID == "" {
		return nil, fmt.Errorf("%w: %s is damaged or of another gostream version (format %d, err %v): restore it or use a new directory", ErrDataDir, filepath.Join(dir, identityName), id.Format, err)
	}
	if id.Name != name {
		return nil, fmt.Errorf("%w: %s belongs to worker %s of cluster %s, not to %s (give each worker its own --data)", ErrDataDir, dir, id.Name, id.ClusterID, name)
	}
	if id.Removed {
		return nil, removedError(id.Name, id.ClusterID, dir)
	}
	if id.Join != "" && peers != nil {
		return nil, fmt.Errorf("%w: %s belongs to worker %s, which joined cluster %s with --join %s: restart it without --peers", ErrConfig, dir, id.Name, id.ClusterID, id.Join)
	}
	if peers != nil {
		if want := hex.EncodeToString(idBytes(clusterIDOf(peers))); want != id.ClusterID {
			return nil, fmt.Errorf("%w: %s belongs to cluster %s (peers %s), but --peers %s describes cluster %s: give the --peers this directory was created with, or a new --data for a new cluster",
				ErrDataDir, dir, id.ClusterID, id.Peers, formatPeers(peers), want)
		}
	}
	return &id, nil
}

func idBytes(id [clusterIDLen]byte) []byte { return id[:] }

// parseClusterID parses a cluster id in hex.
func parseClusterID(s string) ([clusterIDLen]byte, error) {
	var id [clusterIDLen]byte
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != clusterIDLen {
		return id, fmt.Errorf("cluster id %q is not %d bytes in hex", s, clusterIDLen)
	}
	return [clusterIDLen]byte(raw), nil
}

// writeIdentity creates dir and its identity file, atomically.
func writeIdentity(dir string, id identity) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: %w (check the path is writable)", ErrDataDir, err)
	}
	raw, _ := json.MarshalIndent(id, "", "  ")
	if err := fsutil.WriteAtomic(filepath.Join(dir, identityName), append(raw, '\n')); err != nil {
		return fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	return nil
}
