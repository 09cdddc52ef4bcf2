package cli

import (
	"strings"
	"testing"
)

func TestConsumeCmdValidation(t *testing.T) {
	brokers := newFakeBrokers(t, "logs")
	for _, tc := range []struct {
		args   []string
		errHas string
	}{
		{[]string{"--brokers", brokers}, "--topic is required"},
		{[]string{"--brokers", brokers, "--topic", "logs", "--max-messages", "-1"}, "--max-messages is -1; want 0 (no limit) or more"},
		{[]string{"--brokers", brokers, "--topic", "logs", "--timeout", "-1s"}, "--timeout is -1s; want 0 (wait forever)"},
		{[]string{"--brokers", brokers, "--topic", "nope"}, `topic "nope" does not exist`},
		{[]string{"--brokers", "127.0.0.1:1", "--topic", "no/pe"}, `kafka: invalid topic name "no/pe"`}, // no broker asked
		{[]string{"--brokers", brokers, "--topic", "logs", "extra"}, "unknown command"},
	} {
		if _, _, err := run(t, newConsumeCmd, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("consume %q: error %v, want %q", tc.args, err, tc.errHas)
		}
	}
}
