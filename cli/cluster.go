package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gostream/gostream/cluster"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/spf13/cobra"
)

// addMasterFlag registers --master on cmd (persistent) and returns a func
// giving the addresses of a gostream:// master.
func addMasterFlag(cmd *cobra.Command) func() ([]string, error) {
	s := cmd.PersistentFlags().String("master", os.Getenv("GOSTREAM_MASTER"),
		"the cluster as gostream://host:port,... naming one or more workers ($GOSTREAM_MASTER sets the default)")
	return func() ([]string, error) {
		if *s == "" {
			return nil, errors.New("--master is not set: give --master gostream://host:port,... or set $GOSTREAM_MASTER")
		}
		return cluster.ParseMaster(*s)
	}
}

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect a cluster of gostream workers, or remove one",
		Example: `  gostream cluster status --master gostream://127.0.1.1:7077,127.0.1.2:7077,127.0.1.3:7077
  gostream cluster remove s2 --master gostream://127.0.1.1:7077`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("missing subcommand: want status or remove (see gostream cluster --help)")
		},
	}
	master := addMasterFlag(cmd)
	st := &cobra.Command{
		Use:   "status",
		Short: "Show the members, the leader, the term and the jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := masterClient(master)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			return printStatus(cmd.OutOrStdout(), resp)
		},
	}
	rm := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a worker from the cluster",
		Long: `Remove a worker from the cluster: the leader logs its removal and takes it
out of the Raft group (handing its own leadership over first when it is the
one removed). A worker holding the only current copy of a job's state
partition (--state-replicas 1) is drained first: its partitions move to the
other workers at the job's next two batches. The last member, and a removal
that would leave fewer answering members than a quorum, are refused. The removed worker stops; its data directory is
refused from then on (delete it and start the worker with --join to add it
again).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := masterClient(master)
			if err != nil {
				return err
			}
			defer c.Close()
			members, err := c.RemoveMember(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			names := make([]string, len(members))
			for i, m := range members {
				names[i] = m.Name
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "removed %s; members: %s\n", args[0], strings.Join(names, ", "))
			return err
		},
	}
	cmd.AddCommand(st, rm)
	return cmd
}

// masterClient returns a client of the cluster master names; the caller
// closes it.
func masterClient(master func() ([]string, error)) (*cluster.Client, error) {
	addrs, err := master()
	if err != nil {
		return nil, err
	}
	return cluster.NewClient(addrs), nil
}

// printStatus writes a cluster status for people.
func printStatus(out io.Writer, s *clusterpb.StatusResponse) error {
	fmt.Fprintf(out, "cluster %s, answered by %s\nleader: %s, term %d\n\n", s.ClusterId, s.AnsweredBy, leaderLine(s), s.Term)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tADDRESS\tSTATE\tTERM\tLAST CONTACT\tAPPLIED\tCORES\t")
	for _, m := range s.Members {
		contact := "-"
		if m.LastContactMs >= 0 {
			contact = (time.Duration(m.LastContactMs) * time.Millisecond).String()
		}
		state := m.State
		if m.Error != "" {
			state += " (" + m.Error + ")"
		}
		cores := "-"
		if m.Cores > 0 {
			cores = strconv.Itoa(int(m.Cores))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t\n", m.Member.GetName(), m.Member.GetAddress(), state, m.Term, contact, m.AppliedIndex, cores)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Jobs) == 0 {
		fmt.Fprintln(out, "\nno jobs")
		printLeaderChanges(out, s, statusLeaderChanges)
		return nil
	}
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSHUFFLE PARTITIONS\tKEY GROUPS\tLAST PLANNED\tLAST COMMITTED\tASSIGNMENT EPOCH\t")
	batch := func(id int64) string {
		if id < 0 {
			return "-"
		}
		return strconv.FormatInt(id, 10)
	}
	for _, j := range s.Jobs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t\n", j.Name, j.ShufflePartitions, j.KeyGroups, batch(j.LastPlanned), batch(j.LastCommitted), j.Assignment.GetEpoch())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, j := range s.Jobs {
		printEpochs(out, j, statusEpochs)
	}
	printLeaderChanges(out, s, statusLeaderChanges)
	return nil
}

// leaderLine says who leads: the leader, or, when the answer is a member's
// own view because it reaches no leader, that, and how many members it
// reaches against the majority a leader needs.
func leaderLine(s *clusterpb.StatusResponse) string {
	if s.Leader != "" && s.Leader == s.AnsweredBy {
		return s.Leader
	}
	reached := 0
	for _, m := range s.Members {
		if m.State != "Unreachable" {
			reached++
		}
	}
	view := fmt.Sprintf("this is %s's own view: it reaches %d of %d members, itself included; a leader needs %d", s.AnsweredBy, reached, len(s.Members), len(s.Members)/2+1)
	if s.Leader == "" {
		return "none reachable from " + s.AnsweredBy + " (" + view + "; no progress on this side until a majority is reachable)"
	}
	return s.Leader + ", not reachable from " + s.AnsweredBy + " (" + view + ")"
}

// statusLeaderChanges is how many of the last leader changes cluster
// status shows.
const statusLeaderChanges = 5

// printLeaderChanges writes the last n leader changes the answering
// member saw, oldest first.
func printLeaderChanges(out io.Writer, s *clusterpb.StatusResponse, n int) {
	changes := s.LeaderChanges[max(0, len(s.LeaderChanges)-n):]
	if len(changes) == 0 {
		return
	}
	fmt.Fprintf(out, "\nlast %d leader changes, as %s saw them:\n", len(changes), s.AnsweredBy)
	for _, c := range changes {
		leader := c.Leader
		if leader == "" {
			leader = "none"
		}
		line := fmt.Sprintf("  %s  term %d: leader %s", time.UnixMilli(c.TimeMs).UTC().Format("2006-01-02 15:04:05.000Z"), c.Term, leader)
		if c.Reason != "" {
			line += ": " + c.Reason
		}
		fmt.Fprintln(out, line)
	}
}

// statusEpochs is how many of each job's last epoch changes cluster
// status shows.
const statusEpochs = 5

// printEpochs writes j's last n assignment epoch changes, oldest first:
// when, which epoch, and why.
func printEpochs(out io.Writer, j *clusterpb.JobStatus, n int) {
	changes := j.Epochs[max(0, len(j.Epochs)-n):]
	if len(changes) == 0 {
		return
	}
	fmt.Fprintf(out, "\njob %s, last %d assignment epochs:\n", j.Name, len(changes))
	for _, c := range changes {
		fmt.Fprintf(out, "  %s  epoch %d: %s\n", time.UnixMilli(c.TimeMs).UTC().Format("2006-01-02 15:04:05.000Z"), c.Epoch, c.Reason)
	}
}
