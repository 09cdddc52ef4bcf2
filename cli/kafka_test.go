package cli

import (
	"net"
	"strings"
	"testing"
)

// TestKafkaCmdErrors: `gostream kafka` on an address in use, or with bad
// flags, fails with an error naming the flag and the next step.
func TestKafkaCmdErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", ln.Addr().String()}, "--listen " + ln.Addr().String() + " is in use (another Kafka?): pick a free address with --listen, or use that Kafka with --brokers"},
		{[]string{"--listen", "9092"}, `listen address "9092"`},
		{[]string{"--listen", "127.0.0.1:0", "--partitions", "0"}, "partitions is 0; want 1 or more"},
		{[]string{"--listen", "127.0.0.1:0", "--topic", "a b"}, `invalid topic name "a b"`},
	} {
		_, _, err := run(t, newKafkaCmd, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("gostream kafka %s: %v; want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
