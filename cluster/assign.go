package cluster

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/gostream/gostream/proto/clusterpb"
)

// kafkaPartition is a partition of a topic.
type kafkaPartition struct {
	topic     string
	partition int32
}

func (p kafkaPartition) String() string { return fmt.Sprintf("%s-%d", p.topic, p.partition) }

func comparePartitions(a, b kafkaPartition) int {
	return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
}

// nextAssignment plans j's next assignment epoch for Kafka partitions
// parts, the group's members and live, the leader's view of which members
// are up. next is always the epoch after j's current one; reason is a
// sentence saying what moved and why, "" when next assigns everything as
// j's current epoch does (the caller then keeps the current epoch, unless
// it starts a new driver run, which logs one anyway).
//
// It keeps every Kafka partition j assigns where it is (sticky: its reader
// keeps fetching ahead) and gives each other one to the live worker reading
// the fewest, ties to the first by name; it keeps j's state partitions, or
// places them when j has none (PlaceState over the live members: the key
// groups split into j's shuffle partitions, owners in turn, each standby
// on the next worker when replicas is 2 and there are 2 workers or more).
func nextAssignment(j *clusterpb.Job, parts []kafkaPartition, members []string, live func(name string) bool, replicas int) (next *clusterpb.Assignment, reason string) {
	cur := j.GetAssignment()
	var workers []string
	for _, m := range members {
		if live(m) {
			workers = append(workers, m)
		}
	}
	slices.Sort(workers)
	assigned := map[kafkaPartition]string{}
	load := map[string]int{}
	for _, k := range cur.GetKafka() {
		assigned[kafkaPartition{k.Topic, k.Partition}] = k.Worker
		load[k.Worker]++
	}
	parts = slices.Clone(parts)
	slices.SortFunc(parts, comparePartitions)
	var added []string
	for _, p := range parts {
		if _, ok := assigned[p]; !ok {
			w := slices.MinFunc(workers, func(a, b string) int { return cmp.Or(cmp.Compare(load[a], load[b]), cmp.Compare(a, b)) })
			assigned[p] = w
			load[w]++
			added = append(added, fmt.Sprintf("%s -> %s", p, w))
		}
	}
	next = &clusterpb.Assignment{Epoch: cur.GetEpoch() + 1, State: cur.GetState()}
	for p, w := range assigned {
		next.Kafka = append(next.Kafka, &clusterpb.KafkaAssignment{Topic: p.topic, Partition: p.partition, Worker: w})
	}
	slices.SortFunc(next.Kafka, func(a, b *clusterpb.KafkaAssignment) int {
		return comparePartitions(kafkaPartition{a.Topic, a.Partition}, kafkaPartition{b.Topic, b.Partition})
	})
	if len(next.State) == 0 {
		next.State = PlaceState(j.KeyGroups, j.ShufflePartitions, workers, replicas)
	}
	switch {
	case cur == nil:
		reason = fmt.Sprintf("first assignment over %s", strings.Join(workers, ", "))
	case len(added) > 0:
		reason = "new Kafka partitions " + strings.Join(added, ", ")
	}
	return next, reason
}

// PlaceState splits a job's key groups into partitions contiguous ranges,
// as even as they divide, and places them on workers in turn: partition i
// is owned by workers[i % len(workers)] and, with 2 replicas and 2 or more
// workers, stood by for by the next worker. With as many key groups as
// partitions, partition i holds key group i alone, the layout of a local
// checkpoint's state.
func PlaceState(keyGroups, partitions int32, workers []string, replicas int) []*clusterpb.StatePartition {
	out := make([]*clusterpb.StatePartition, partitions)
	for i := range partitions {
		p := &clusterpb.StatePartition{
			FirstKeyGroup: int32(int64(i) * int64(keyGroups) / int64(partitions)),
			EndKeyGroup:   int32(int64(i+1) * int64(keyGroups) / int64(partitions)),
			Owner:         workers[int(i)%len(workers)],
		}
		if replicas >= 2 && len(workers) >= 2 {
			p.Standby = workers[(int(i)+1)%len(workers)]
		}
		out[i] = p
	}
	return out
}
