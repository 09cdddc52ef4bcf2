package kafkasrc

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestAdmin(t *testing.T) {
	ctx := testCtx(t)
	c := newFake(t, "logs", 1)
	addrs := c.ListenAddrs()
	a, err := NewAdmin(addrs, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	if err := a.CreateTopic(ctx, "events", 3, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	err = a.CreateTopic(ctx, "events", 3, 1, nil)
	if !errors.Is(err, ErrTopicExists) || !strings.Contains(err.Error(), `kafka: topic "events" already exists on `+addrs[0]+" (inspect it: gostream topics describe events") {
		t.Fatalf("second create: %v", err)
	}
	for _, bad := range []struct {
		name       string
		partitions int32
		rf         int16
		errHas     string
	}{
		{"bad/name", 1, 1, "invalid topic name"},
		{"x", 0, 1, "partitions is 0; want 1 or more"},
		{"x", 1, 0, "replication factor is 0; want 1 or more"},
	} {
		if err := a.CreateTopic(ctx, bad.name, bad.partitions, bad.rf, nil); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), bad.errHas) {
			t.Errorf("CreateTopic(%q, %d, %d) = %v, want %q", bad.name, bad.partitions, bad.rf, err, bad.errHas)
		}
	}

	produceN(t, addrs, "events", 2, 0, 7)
	info, err := a.DescribeTopic(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "events" || len(info.Partitions) != 3 || info.ReplicationFactor != 1 {
		t.Fatalf("describe = %+v", info)
	}
	p2 := info.Partitions[2]
	if p2.Partition != 2 || p2.Leader < 0 || len(p2.Replicas) != 1 || len(p2.ISR) != 1 || p2.Earliest != 0 || p2.Latest != 7 {
		t.Fatalf("partition 2 = %+v", p2)
	}

	list, err := a.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ti := range list {
		names = append(names, ti.Name)
	}
	if strings.Join(names, ",") != "events,logs" {
		t.Fatalf("ListTopics = %v, want events,logs", names)
	}

	if err := a.DeleteTopic(ctx, "events"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DescribeTopic(ctx, "events"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("describe deleted topic: %v, want ErrUnknownTopic", err)
	}
	if err := a.DeleteTopic(ctx, "events"); !errors.Is(err, ErrUnknownTopic) || !strings.Contains(err.Error(), "gostream topics create events") {
		t.Fatalf("delete deleted topic: %v, want ErrUnknownTopic with a hint", err)
	}
}

func TestAdminUnreachable(t *testing.T) {
	a, err := NewAdmin([]string{freeAddr(t)}, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.ListTopics(testCtx(t)); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("ListTopics = %v, want ErrUnreachable", err)
	}
	if err := a.CreateTopic(testCtx(t), "x", 1, 1, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("CreateTopic = %v, want ErrUnreachable", err)
	}
}

func TestEmbedded(t *testing.T) {
	ctx := testCtx(t)
	e, err := StartEmbedded(ctx, "logs", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if addrs := e.Addrs(); len(addrs) != 1 || !strings.HasPrefix(addrs[0], "127.0.0.1:") {
		t.Fatalf("Addrs() = %v, want one 127.0.0.1 address", addrs)
	}
	s := newTestSource(t, e.Addrs(), nil)
	_, latest, err := s.Offsets(ctx, []string{"logs"})
	if err != nil || len(latest["logs"]) != 3 {
		t.Fatalf("Offsets = %v, %v; want 3 partitions", latest, err)
	}
	if _, err := StartEmbedded(ctx, "logs", 0); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("0 partitions: %v, want ErrInvalidConfig", err)
	}
}

// TestAdminDescribeWhileDeleted describes a topic deleted after the client
// cached its metadata: the partitions' leaders no longer know it, nor does
// fresh metadata. The error is ErrUnknownTopic, naming the topic.
func TestAdminDescribeWhileDeleted(t *testing.T) {
	ctx := testCtx(t)
	c := newFake(t, "logs", 2)
	a, err := NewAdmin(c.ListenAddrs(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.DescribeTopic(ctx, "logs"); err != nil {
		t.Fatal(err)
	}
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		for _, rt := range req.(*kmsg.MetadataRequest).Topics {
			st := kmsg.NewMetadataResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	c.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.(*kmsg.ListOffsetsRequest).Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	if _, err := a.DescribeTopic(ctx, "logs"); !errors.Is(err, ErrUnknownTopic) || !strings.Contains(err.Error(), `topic "logs" does not exist`) {
		t.Fatalf("describe = %v, want ErrUnknownTopic", err)
	}
}
