package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gostream/gostream/cluster"
	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/proto/clusterpb"
)

func newJobsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List, inspect and stop the jobs of a cluster",
		Example: `  gostream jobs list --master gostream://127.0.1.1:7077,127.0.1.2:7077
  gostream jobs status wordcount
  gostream jobs stop wordcount`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("missing subcommand: want list, status or stop (see gostream jobs --help)")
		},
	}
	master := addMasterFlag(cmd)
	// withClient runs fn with a client of the cluster --master names.
	withClient := func(fn func(*cluster.Client) error) error {
		addrs, err := master()
		if err != nil {
			return err
		}
		c := cluster.NewClient(addrs)
		defer c.Close()
		return fn(c)
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the jobs with their state, last batches and driver",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(func(c *cluster.Client) error {
				jobs, err := c.Jobs(cmd.Context(), "")
				if err != nil {
					return err
				}
				return printJobs(cmd.OutOrStdout(), jobs)
			})
		},
	}
	var last int
	st := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a job's state and its last progress reports",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(func(c *cluster.Client) error {
				jobs, err := c.Jobs(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return printJobStatus(cmd.OutOrStdout(), jobs[0], last)
			})
		},
	}
	st.Flags().IntVar(&last, "last", 10, "progress reports to show (the leader keeps 100)")
	stop := &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop a job; submitting it again resumes it from its batch log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(func(c *cluster.Client) error {
				j, err := c.StopJob(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "job %s: %s, last committed batch %s\n", j.Name, stateText(j), batchText(j.LastCommitted))
				return err
			})
		},
	}
	cmd.AddCommand(list, st, stop)
	return cmd
}

// stateText is a job's state for people: running, stopped, finished, or
// failed with its error.
func stateText(j *clusterpb.JobStatus) string {
	s := strings.ToLower(j.State.String())
	if j.Error != "" {
		s += ": " + j.Error
	}
	return s
}

func batchText(id int64) string {
	if id < 0 {
		return "-"
	}
	return strconv.FormatInt(id, 10)
}

func driverText(j *clusterpb.JobStatus) string {
	if j.Driver == "" {
		return "-"
	}
	return fmt.Sprintf("%s (term %d)", j.Driver, j.DriverTerm)
}

// printJobs writes the jobs as a table.
func printJobs(out io.Writer, jobs []*clusterpb.JobStatus) error {
	if len(jobs) == 0 {
		_, err := fmt.Fprintln(out, "no jobs (gostream submit JOB --master ... registers one)")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATE\tLAST PLANNED\tLAST COMMITTED\tDRIVER\t")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", j.Name, stateText(j), batchText(j.LastPlanned), batchText(j.LastCommitted), driverText(j))
	}
	return tw.Flush()
}

// printJobStatus writes a job's status and its last n progress reports.
func printJobStatus(out io.Writer, j *clusterpb.JobStatus, n int) error {
	fmt.Fprintf(out, "job %s: %s\ndriver: %s\nlast planned batch %s, last committed %s; %d shuffle partitions, %d key groups, assignment epoch %d\n",
		j.Name, stateText(j), driverText(j), batchText(j.LastPlanned), batchText(j.LastCommitted), j.ShufflePartitions, j.KeyGroups, j.Assignment.GetEpoch())
	printEpochs(out, j, len(j.Epochs))
	reports := j.Progress[max(0, len(j.Progress)-n):]
	if len(reports) == 0 {
		_, err := fmt.Fprintln(out, "no progress reports from its driver yet")
		return err
	}
	fmt.Fprintf(out, "last %d progress reports:\n", len(reports))
	for _, raw := range reports {
		var p engine.Progress
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("a progress report does not decode: %w (are the workers and this gostream the same version?)", err)
		}
		fmt.Fprintln(out, progressLine(p))
	}
	return nil
}
