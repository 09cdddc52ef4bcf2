package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gostream/gostream/cluster"
	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/proto/clusterpb"
)

// localMaster matches Spark's local masters: local, local[*], local[N].
var localMaster = regexp.MustCompile(`^local(\[(\*|[1-9][0-9]*)\])?$`)

// clusterAddrs returns the workers --master names, nil for a local
// master; with a cluster, it refuses the flags that only mean something
// in this process.
func (f submitFlags) clusterAddrs() ([]string, error) {
	if localMaster.MatchString(f.master) {
		return nil, nil
	}
	if !strings.HasPrefix(f.master, cluster.MasterScheme) {
		return nil, fmt.Errorf("--master %q: use local[*] (this process) or %shost:port,... (workers of a cluster)", f.master, cluster.MasterScheme)
	}
	addrs, err := cluster.ParseMaster(f.master)
	if err != nil {
		return nil, err
	}
	for _, local := range []struct{ flag, val, why string }{
		{"--checkpoint", f.checkpoint, "the cluster keeps the job's batch log in its Raft log"},
		{"--input", f.input, "the embedded broker lives in this process; load the topic with `gostream produce`"},
		{"--cpuprofile", f.cpuProfile, "it profiles this process, not the workers"},
		{"--memprofile", f.memProfile, "it profiles this process, not the workers"},
		{"--trace", f.traceFile, "it traces this process, not the workers"},
	} {
		if local.val != "" {
			return nil, fmt.Errorf("%s cannot be used with --master %s: %s", local.flag, f.master, local.why)
		}
	}
	if f.brokers == "" {
		return nil, fmt.Errorf("--master %s needs --brokers: the cluster's workers read the topic from Kafka", f.master)
	}
	return addrs, nil
}

// submitToCluster registers the job w describes with the cluster at addrs,
// then follows it like spark-submit: the sink's output on stdout and a
// progress line per batch on stderr, until it ends. Ctrl-C (ctx) detaches.
func submitToCluster(ctx context.Context, cmd *cobra.Command, name string, w *engine.DataStreamWriter, f submitFlags, addrs []string) error {
	qp, err := w.Plan()
	if err != nil {
		return err
	}
	job, err := cluster.NewJob(name, qp)
	if err != nil {
		return err
	}
	printProgress, closeProgress, err := progressPrinter(f, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer closeProgress()
	c := cluster.NewClient(addrs)
	defer c.Close()
	reg, err := c.RegisterJob(ctx, job)
	if err != nil {
		return fmt.Errorf("submitting job %s to %s: %w", name, f.master, err)
	}
	stderr, stdout := cmd.ErrOrStderr(), cmd.OutOrStdout()
	fmt.Fprintf(stderr, "gostream: job %s submitted to %s; following it (Ctrl-C detaches, the job runs on)\n", name, f.master)
	driver := ""
	var last *clusterpb.JobStatus
	err = c.Watch(ctx, name, &reg.LastCommitted, func(ev *clusterpb.WatchEvent) error {
		switch k := ev.Kind.(type) {
		case *clusterpb.WatchEvent_Status:
			last = k.Status
			if d := k.Status.Driver; d != "" && d != driver {
				driver = d
				fmt.Fprintf(stderr, "gostream: job %s is driven by %s (Raft term %d)\n", name, d, k.Status.DriverTerm)
			}
		case *clusterpb.WatchEvent_Report:
			if _, err := stdout.Write(k.Report.Output); err != nil {
				return err
			}
			var p engine.Progress
			if err := json.Unmarshal(k.Report.Progress, &p); err != nil {
				return fmt.Errorf("job %s: a progress report of batch %d does not decode: %w (are the workers and this gostream the same version?)", name, k.Report.BatchId, err)
			}
			printProgress(p)
		}
		return nil
	})
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		fmt.Fprintf(stderr, "gostream: detached from job %s, which runs on; stop it with: gostream jobs stop %s --master %s\n", name, name, f.master)
		return nil
	case err != nil:
		return fmt.Errorf("following job %s: %w", name, err)
	}
	switch last.State {
	case clusterpb.JobState_FAILED:
		return fmt.Errorf("job %s failed: %s", name, last.Error)
	case clusterpb.JobState_STOPPED:
		fmt.Fprintf(stderr, "gostream: job %s was stopped (gostream jobs stop); submitting it again resumes it\n", name)
	}
	return nil
}
