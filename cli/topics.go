package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/gostream/gostream/kafkasrc"
	"github.com/spf13/cobra"
)

// defaultBrokers is --brokers' default when GOSTREAM_BROKERS is not set.
const defaultBrokers = "localhost:9092"

// addBrokersFlag registers --brokers on cmd (persistent, so subcommands
// inherit it) and returns a func giving the parsed list.
func addBrokersFlag(cmd *cobra.Command) func() ([]string, error) {
	def := defaultBrokers
	if env := os.Getenv("GOSTREAM_BROKERS"); env != "" {
		def = env
	}
	s := cmd.PersistentFlags().String("brokers", def,
		"comma-separated Kafka brokers as host:port ($GOSTREAM_BROKERS sets the default)")
	return func() ([]string, error) {
		brokers, err := kafkasrc.ParseBrokers(*s)
		if err != nil {
			return nil, fmt.Errorf("--brokers: %w", err)
		}
		return brokers, nil
	}
}

func newTopicsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "Create, list, describe and delete Kafka topics",
		Example: `  gostream topics create logs --partitions 3 --replication-factor 2 --brokers s1:9092,s2:9092,s3:9092
  gostream topics list
  gostream topics describe logs
  gostream topics delete logs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("missing subcommand: want create, list, describe or delete (see gostream topics --help)")
		},
	}
	brokers := addBrokersFlag(cmd)
	// withAdmin runs fn with an admin client for --brokers, closed afterwards.
	withAdmin := func(fn func(a *kafkasrc.Admin) error) error {
		b, err := brokers()
		if err != nil {
			return err
		}
		a, err := kafkasrc.NewAdmin(b, 0)
		if err != nil {
			return err
		}
		defer a.Close()
		return fn(a)
	}

	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic and wait until every partition has a leader",
		Args:  exactlyOneName,
	}
	partitions := create.Flags().Int32("partitions", 1, "number of partitions (1 or more)")
	rf := create.Flags().Int16("replication-factor", 1, "replicas per partition (1 up to the number of brokers)")
	configs := create.Flags().StringArray("config", nil, "topic config as key=value, repeatable (e.g. --config retention.ms=86400000)")
	create.RunE = func(cmd *cobra.Command, args []string) error {
		if *partitions < 1 {
			return fmt.Errorf("--partitions is %d; want 1 or more", *partitions)
		}
		if *rf < 1 {
			return fmt.Errorf("--replication-factor is %d; want 1 or more", *rf)
		}
		cfg := map[string]string{}
		for _, kv := range *configs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--config %q: want key=value, e.g. retention.ms=86400000", kv)
			}
			cfg[k] = v
		}
		return withAdmin(func(a *kafkasrc.Admin) error {
			if err := a.CreateTopic(cmd.Context(), args[0], *partitions, *rf, cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created topic %s (%d partitions, replication factor %d)\n", args[0], *partitions, *rf)
			return nil
		})
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List topics, one per line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(func(a *kafkasrc.Admin) error {
				topics, err := a.ListTopics(cmd.Context())
				if err != nil {
					return err
				}
				for _, t := range topics {
					fmt.Fprintln(cmd.OutOrStdout(), t.Name)
				}
				return nil
			})
		},
	}

	describe := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a topic's partitions: leader, replicas, in-sync replicas and offsets",
		Args:  exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(func(a *kafkasrc.Admin) error {
				t, err := a.DescribeTopic(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintf(w, "Topic: %s\tPartitionCount: %d\tReplicationFactor: %d\n", t.Name, len(t.Partitions), t.ReplicationFactor)
				for _, p := range t.Partitions {
					fmt.Fprintf(w, "\tPartition: %d\tLeader: %d\tReplicas: %s\tIsr: %s\tOffsets: %d-%d\n",
						p.Partition, p.Leader, joinIDs(p.Replicas), joinIDs(p.ISR), p.Earliest, p.Latest)
				}
				return w.Flush()
			})
		},
	}

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic and its data",
		Args:  exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(func(a *kafkasrc.Admin) error {
				if err := a.DeleteTopic(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted topic %s\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, describe, del)
	return cmd
}

func exactlyOneName(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want exactly one topic name, got %d arguments (usage: %s)", len(args), cmd.UseLine())
	}
	return nil
}

func joinIDs(ids []int32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ",")
}
