package kafkasrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gostream/gostream/internal/logbuf"
)

func TestRetriable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{kerr.LeaderNotAvailable, true},
		{kerr.NotLeaderForPartition, true},
		{fmt.Errorf("logs/1: %w", kerr.UnknownTopicOrPartition), true}, // a new leader still loading it
		{kerr.RequestTimedOut, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{context.DeadlineExceeded, true}, // an attempt's timeout
		{io.EOF, true},
		{kerr.TopicAuthorizationFailed, false},
		{kerr.InvalidTopicException, false},
		{&kadm.AuthError{Err: kerr.ClusterAuthorizationFailed}, false},
		{errorf(ErrUnknownTopic, "kafka: topic %q does not exist", "x"), false},
		{wrapf(ErrUnknownTopic, kerr.UnknownTopicOrPartition, "kafka: topic %q does not exist", "x"), false},
		{errorf(ErrInvalidConfig, "kafka: invalid topic name"), false},
		{kgo.ErrClientClosed, false},
		{context.Canceled, false},
	} {
		if got := retriable(tc.err); got != tc.want {
			t.Errorf("retriable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// failListOffsets makes the fake cluster answer ListOffsets with err for
// every partition while fail returns true.
func failListOffsets(c *kfake.Cluster, err *kerr.Error, fail func() bool) {
	c.ControlKey(int16(kmsg.ListOffsets), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !fail() {
			return nil, nil, false
		}
		req := kr.(*kmsg.ListOffsetsRequest)
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, err.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// TestOffsetsRetryLeaderNotAvailable lists offsets while the partitions'
// leaders answer LEADER_NOT_AVAILABLE (as during an election): the call
// waits, warning with what it waits for, and succeeds once they answer.
func TestOffsetsRetryLeaderNotAvailable(t *testing.T) {
	c := newFake(t, "logs", 2)
	produceN(t, c.ListenAddrs(), "logs", 1, 0, 3)
	var failing atomic.Bool
	failing.Store(true)
	var calls atomic.Int32
	failListOffsets(c, kerr.LeaderNotAvailable, func() bool { calls.Add(1); return failing.Load() })
	var logs logbuf.Buffer
	s, err := NewSource(Config{Brokers: c.ListenAddrs(), Timeout: time.Second, RetryTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	var latest Offsets
	go func() {
		var err error
		_, latest, err = s.Offsets(testCtx(t), []string{"logs"})
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "waiting for Kafka to recover") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning after %d failed listings; logs:\n%s", calls.Load(), logs.String())
		}
		select {
		case err := <-done:
			t.Fatalf("Offsets returned while the leaders were unavailable: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, want := range []string{`call="listing offsets of logs"`, `brokers_answering="0 at `, "partitions_without_leader=none", "LEADER_NOT_AVAILABLE", "gives_up_in="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("warning lacks %q:\n%s", want, logs.String())
		}
	}
	failing.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("Offsets after the leaders came back: %v", err)
	}
	if got := latest["logs"][1]; got != 3 {
		t.Errorf("latest offset of logs/1 = %d, want 3", got)
	}
}

// TestOffsetsGiveUp checks the error of a call that retried errors that
// may pass until RetryTimeout: it says what failed and what the cluster
// looks like.
func TestOffsetsGiveUp(t *testing.T) {
	c := newFake(t, "logs", 2)
	failListOffsets(c, kerr.NotLeaderForPartition, func() bool { return true })
	s, err := NewSource(Config{Brokers: c.ListenAddrs(), Timeout: time.Second, RetryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, err = s.Offsets(testCtx(t), []string{"logs"})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	// How long it retried is measured, and more than RetryTimeout on a
	// loaded machine; the message rounds it to seconds.
	if m := regexp.MustCompile(`kafka: listing offsets of logs failed for (\d+)s with errors that may pass \(last: `).FindStringSubmatch(err.Error()); m == nil || m[1] == "0" {
		t.Errorf("error does not say it retried for at least 1s:\n%v", err)
	}
	for _, want := range []string{"brokers answering: 0 at " + c.ListenAddrs()[0], "not answering: none", "partitions without a leader: none",
		"set the source option kafkaRetryTimeout or gostream submit --kafka-retry-timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestTopicNamesCheckedLocally checks that an invalid topic name fails at
// once, without asking a broker (none listens at the address).
func TestTopicNamesCheckedLocally(t *testing.T) {
	dead := freeAddr(t)
	s, err := NewSource(Config{Brokers: []string{dead}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := NewAdmin([]string{dead}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := testCtx(t)
	for name, call := range map[string]func() error{
		"Offsets":       func() error { _, _, err := s.Offsets(ctx, []string{"logs", "bad name"}); return err },
		"DescribeTopic": func() error { _, err := a.DescribeTopic(ctx, "bad name"); return err },
		"DeleteTopic":   func() error { return a.DeleteTopic(ctx, "bad name") },
		"CreateTopic":   func() error { return a.CreateTopic(ctx, "bad name", 1, 1, nil) },
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `kafka: invalid topic name "bad name"`) {
			t.Errorf("%s: err = %v, want an invalid topic name error", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v, want no broker asked", name, d)
		}
	}
}
