package cli

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/gostream/gostream/cluster"
	"github.com/spf13/cobra"
)

func newWorkerCmd() *cobra.Command {
	var name, listen, data, peers, join, logLevel, cpuProfile, memProfile, cores string
	var replicas int
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a cluster worker: a member of the workers' Raft group",
		Long: `Run a cluster worker: a member of the workers' Raft group, serving Raft and
the cluster's gRPC services on --listen. Started with --peers the first
time, it bootstraps the group; started with --join instead, it joins a
running group (any member named there asks the leader to add it, and the
drivers give it a share of the jobs' work). Restarted with the same --data,
it rejoins with its log, without --peers or --join. SIGTERM or Ctrl-C stops
it cleanly. A worker removed with 'gostream cluster remove' stops, and its
data directory is refused from then on.`,
		Example: `  gostream worker --name s1 --listen 127.0.1.1:7077 --data /var/lib/gostream \
      --peers s1=127.0.1.1:7077,s2=127.0.1.2:7077,s3=127.0.1.3:7077
  gostream worker --name s4 --listen 127.0.1.4:7077 --data /var/lib/gostream \
      --join 127.0.1.1:7077,127.0.1.2:7077`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			cfg := cluster.DefaultConfig()
			cfg.Name, cfg.Listen, cfg.DataDir, cfg.StateReplicas = name, listen, data, replicas
			var err error
			if cfg.Cores, err = parseCores(cores); err != nil {
				return err
			}
			cfg.SetGOMAXPROCS = true
			cfg.Driver = cluster.BatchDriver
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if peers != "" {
				if cfg.Peers, err = cluster.ParsePeers(peers); err != nil {
					return err
				}
			}
			for a := range strings.SplitSeq(join, ",") {
				if a = strings.TrimSpace(a); a != "" {
					cfg.Join = append(cfg.Join, a)
				}
			}
			stopProfile, err := startProfiles(cpuProfile, memProfile, "")
			if err != nil {
				return err
			}
			defer stopProfile()
			ctx := cmd.Context()
			n, err := cluster.Start(ctx, cfg)
			if err != nil {
				return err
			}
			select {
			case <-ctx.Done():
			case <-n.Failed():
				n.Close()
				return n.Err()
			}
			cfg.Logger.Info("cluster: stopping the worker", "name", name)
			if err := n.Close(); err != nil {
				return fmt.Errorf("stopping worker %s: %w", name, err)
			}
			cfg.Logger.Info("cluster: worker stopped", "name", name)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "this worker's name, unique in the cluster (required), e.g. s1")
	fl.StringVar(&listen, "listen", "", "host:port to bind for Raft and gRPC (required); the address --peers gives this worker")
	fl.StringVar(&data, "data", "", "data directory: the worker's identity, Raft log, snapshots and the state of its jobs' partitions (required)")
	fl.StringVar(&peers, "peers", "", "every worker as NAME=HOST:PORT,... (required on the first start of a new cluster; on a restart it must be the same, or left out)")
	fl.StringVar(&join, "join", "", "join a running cluster on the first start: HOST:PORT,... of one or more of its members (instead of --peers)")
	fl.IntVar(&replicas, "state-replicas", 0, "workers keeping each state partition: 1 (its owner) or 2 (and a standby on another worker); default 2 with 2 or more workers, else 1")
	fl.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.StringVar(&cores, "cores", "auto", "cores this worker uses (its GOMAXPROCS, and the aggregating workers of its map tasks): a number, or auto for this machine's cores (its CPUs, a container's CPU limit, or the GOMAXPROCS environment variable) shared among the cluster's workers that run on this machine, recomputed when workers join or leave; either way Go stops adjusting GOMAXPROCS to a container's changing CPU limit")
	fl.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the worker, from its start until it stops, to this file (go tool pprof)")
	fl.StringVar(&memProfile, "memprofile", "", "write a heap profile of the worker when it stops to this file (go tool pprof; -sample_index=alloc_space shows what it allocated since its start)")
	for _, f := range []string{"name", "listen", "data"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// parseCores reads worker --cores: auto (0, cluster.Config.Cores's
// default) or a number of cores from 1 to cluster.MaxCores.
func parseCores(s string) (int, error) {
	if strings.EqualFold(s, "auto") {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > cluster.MaxCores {
		return 0, fmt.Errorf("--cores %q: use a number of cores from 1 to %d, or auto to share this machine's cores among the workers that run on it", s, cluster.MaxCores)
	}
	return n, nil
}
