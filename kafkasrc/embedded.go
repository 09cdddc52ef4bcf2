package kafkasrc

import (
	"context"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is the zero-setup broker of the quickstart: franz-go's in-process
// fake Kafka (kfake) with one broker on a free port of 127.0.0.1. It keeps
// data in memory only and is meant for trying gostream and for fast tests,
// not as a replacement for Apache Kafka.
type Embedded struct {
	c *kfake.Cluster
}

// StartEmbedded starts an embedded broker with the topic created with the
// given number of partitions (>= 1), and waits until the topic can be used or
// ctx ends. Close it when done.
func StartEmbedded(ctx context.Context, topic string, partitions int32) (*Embedded, error) {
	return StartEmbeddedOn(ctx, "127.0.0.1:0", topic, partitions)
}

// StartEmbeddedOn is StartEmbedded with the broker listening on listen
// (host:port; port 0 picks a free one), the address it gives clients too.
// An address in use fails with an error wrapping the listener's (such as
// syscall.EADDRINUSE).
func StartEmbeddedOn(ctx context.Context, listen, topic string, partitions int32) (*Embedded, error) {
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return nil, errorf(ErrInvalidConfig, "kafka: embedded broker: listen address %q: %v; want host:port, like 127.0.0.1:9092", listen, err)
	}
	if err := checkTopicName(topic); err != nil {
		return nil, err
	}
	if partitions < 1 {
		return nil, errorf(ErrInvalidConfig, "kafka: embedded broker: partitions is %d; want 1 or more", partitions)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, listen) }))
	if err != nil {
		return nil, fmt.Errorf("kafka: starting the embedded broker: %w", err)
	}
	e := &Embedded{c: c}
	admin, err := NewAdmin(e.Addrs(), 0)
	if err != nil {
		e.Close()
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.metadata(ctx, topic); err != nil {
		e.Close()
		return nil, fmt.Errorf("kafka: embedded broker did not come up: %w", err)
	}
	return e, nil
}

// Addrs returns the broker addresses (host:port) to give clients.
func (e *Embedded) Addrs() []string { return e.c.ListenAddrs() }

// Close stops the broker and drops its data.
func (e *Embedded) Close() { e.c.Close() }
