package kafkasrc

import (
	"context"
	"fmt"

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
	if err := checkTopicName(topic); err != nil {
		return nil, err
	}
	if partitions < 1 {
		return nil, errorf(ErrInvalidConfig, "kafka: embedded broker: partitions is %d; want 1 or more", partitions)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
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
