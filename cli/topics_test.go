package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
)

// run executes a fresh command with args and stdin, and returns its stdout
// and stderr.
func run(t *testing.T, newCmd func() *cobra.Command, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newCmd()
	var out, errOut bytes.Buffer
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func newFakeBrokers(t *testing.T, topics ...string) string {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(2, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

func TestTopicsCmd(t *testing.T) {
	brokers := newFakeBrokers(t)
	out, _, err := run(t, newTopicsCmd, "", "create", "logs", "--partitions", "3", "--config", "retention.ms=1000", "--brokers", brokers)
	if err != nil || out != "created topic logs (3 partitions, replication factor 1)\n" {
		t.Fatalf("create: %q, %v", out, err)
	}
	if _, _, err := run(t, newTopicsCmd, "", "create", "logs", "--brokers", brokers); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create again: %v, want already exists", err)
	}
	t.Setenv("GOSTREAM_BROKERS", brokers) // the default for --brokers
	if out, _, err := run(t, newTopicsCmd, "", "list"); err != nil || out != "logs\n" {
		t.Fatalf("list: %q, %v", out, err)
	}
	out, _, err = run(t, newTopicsCmd, "", "describe", "logs")
	if err != nil || !strings.Contains(out, "Topic: logs") || !strings.Contains(out, "PartitionCount: 3") || strings.Count(out, "Partition: ") != 3 || !strings.Contains(out, "Offsets: 0-0") {
		t.Fatalf("describe: %q, %v", out, err)
	}
	if out, _, err := run(t, newTopicsCmd, "", "delete", "logs"); err != nil || out != "deleted topic logs\n" {
		t.Fatalf("delete: %q, %v", out, err)
	}
	if _, _, err := run(t, newTopicsCmd, "", "describe", "logs"); err == nil || !strings.Contains(err.Error(), "gostream topics create logs") {
		t.Fatalf("describe deleted: %v, want a hint to create it", err)
	}
}

func TestTopicsCmdValidation(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		errHas string
	}{
		{[]string{}, "missing subcommand: want create, list, describe or delete"},
		{[]string{"create"}, "want exactly one topic name"},
		{[]string{"create", "a", "b"}, "want exactly one topic name"},
		{[]string{"create", "logs", "--partitions", "0"}, "--partitions is 0; want 1 or more"},
		{[]string{"create", "logs", "--replication-factor", "-2"}, "--replication-factor is -2; want 1 or more"},
		{[]string{"create", "logs", "--config", "retention.ms"}, "want key=value"},
		{[]string{"create", "logs", "--partitions", "x"}, "invalid argument"},
		{[]string{"list", "--brokers", "nohost"}, `--brokers: kafka: broker "nohost" is not host:port`},
		{[]string{"list", "--brokers", " , "}, "--brokers: kafka: empty broker list"},
		// Invalid names are refused before any broker is asked (none listens there).
		{[]string{"describe", "no/pe", "--brokers", "127.0.0.1:1"}, `kafka: invalid topic name "no/pe"`},
		{[]string{"delete", "no/pe", "--brokers", "127.0.0.1:1"}, `kafka: invalid topic name "no/pe"`},
	} {
		if _, _, err := run(t, newTopicsCmd, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("topics %q: error %v, want %q", tc.args, err, tc.errHas)
		}
	}
}
