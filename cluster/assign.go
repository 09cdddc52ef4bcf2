package cluster

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/protobuf/proto"
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

// nextAssignment plans j's next assignment epoch: who reads each Kafka
// partition of parts (and of j's current epoch), who owns and who stands
// by for each state partition. members are the group's members; live says
// how the leader sees each (memberState); a worker is a member not down.
// next is
// always the epoch after j's current one; reason is a sentence naming
// what moved and why, "" when next assigns everything as j's current
// epoch does (the caller then keeps the current epoch, unless it starts a
// new driver run, which logs one anyway).
//
// A job's first epoch spreads its Kafka partitions over the workers and
// places its state partitions with PlaceState. After that:
//
//   - Kafka partitions stay where they are (sticky: the reader keeps
//     fetching ahead) unless their worker is down or removed, or the load
//     is uneven by more than one partition (a worker came back or joined)
//     and every worker answered the leader since it leads: then the fewest
//     move, each to the least loaded worker, ties to the first by name.
//     New partitions go to the least loaded worker too.
//   - Work given anew (a Kafka partition, a standby, an owner) goes to a
//     worker that answered the leader when one can take it, to one whose
//     state is unknown only when none can: a new leader that gave work to
//     a member it has not heard from, closed a moment before say, would
//     wait for it to be held down, and be deposed meanwhile under load,
//     and its successor would do the same (a livelock seen with two of
//     three workers left).
//   - A state partition whose owner is not a worker is owned by its
//     standby, if the standby is a worker holding a current copy (its
//     standby_ready_from batch committed). Otherwise it waits for the
//     member that is down with the only current copy, its owner or its
//     standby; when there is none (the owner removed for good), it goes
//     on from its standby's copy, or empty on the least loaded worker.
//   - A standby that is not a worker, or no standby where replicas is 2,
//     is replaced by the worker keeping the fewest partitions (owned or
//     stood by for), never the owner.
//   - Owners are evened out to within one partition per worker, counting
//     a partition on its way to another owner as that owner's, in two
//     epochs, standby first: the partition gets the receiving worker as
//     its standby, marked moving, and the next reduce copies the
//     partition to it; once a batch committed with it there, the receiver
//     becomes the owner and the old owner its standby. A standby already
//     current takes over at once. Owners are evened out only when every
//     worker answered the leader since it leads: a new leader's view of
//     a member it has not heard from yet, the killed leader before it
//     say, is unknown, and a move would drop the current standby of a
//     partition whose owner may turn out down.
//
// The state machine sets each partition's standby_ready_from when it
// applies next. It relies on the driver's contract: a batch whose offsets
// entry is logged after an epoch is reduced in that epoch or a later one.
func nextAssignment(j *clusterpb.Job, parts []kafkaPartition, members []string, live func(name string) memberState, replicas int) (next *clusterpb.Assignment, reason string) {
	p := planner{member: map[string]bool{}, up: map[string]bool{}, draining: map[string]bool{}, replicas: replicas, waits: map[string][]int{}, takes: map[string][]int{}, current: map[string][]int{}}
	settled := true
	for _, m := range members {
		p.member[m] = true
		switch live(m) {
		case memberUnknown:
			settled = false
			p.workers = append(p.workers, m)
		case memberUp:
			p.up[m] = true
			p.workers = append(p.workers, m)
		case memberDraining:
			p.draining[m] = true
		}
	}
	slices.Sort(p.workers)
	cur := j.GetAssignment()
	next = &clusterpb.Assignment{Epoch: cur.GetEpoch() + 1}
	if len(p.workers) == 0 {
		if cur != nil {
			next = proto.CloneOf(cur)
			next.Epoch++
		}
		return next, ""
	}
	_, p.committed = batchLogEnds(j.GetBatchLog())
	next.Kafka = p.kafka(cur.GetKafka(), parts, settled)
	if len(cur.GetState()) == 0 {
		next.State = PlaceState(j.KeyGroups, j.ShufflePartitions, p.workers, replicas)
	} else {
		next.State = p.state(cur.State, settled)
	}
	if cur == nil {
		return next, fmt.Sprintf("first assignment: %d Kafka partitions and %d state partitions over %s", len(next.Kafka), len(next.State), strings.Join(p.workers, ", "))
	}
	if sameWork(cur, next) {
		return next, ""
	}
	return next, p.reason(cur, next)
}

// planner is one nextAssignment's view of the group and what it moved.
type planner struct {
	member    map[string]bool // by name
	up        map[string]bool // members that answered the leader since it leads, by name
	draining  map[string]bool // members up but being removed, by name: no worker
	drainLoad map[string]int  // partitions each worker owns effectively, those of draining members given so far included (state)
	workers   []string        // members up, sorted
	replicas  int
	committed int64 // the job's last committed batch, -1 none

	newKafka   []string         // "logs-4"
	kafkaMoves []string         // "logs-1 s2 -> s1"
	waits      map[string][]int // state partitions waiting for the member down with their only current copy, by member
	takes      map[string][]int // state partitions moving to a worker through its standby copy, by worker
	current    map[string][]int // state partitions moved to a worker whose standby copy is current now, by worker
	notes      []string         // what else the moves of state partitions do not say
	oneReplica bool             // standbys dropped for replicas < 2
}

func (p *planner) worker(name string) bool { return slices.Contains(p.workers, name) }

// lost says why name, which held work in the current epoch, is no worker
// now: "down", "being removed" or "removed".
func (p *planner) lost(name string) string {
	switch {
	case p.draining[name]:
		return "being removed"
	case p.member[name]:
		return "down"
	}
	return "removed"
}

// leastLoaded returns the worker with the lowest load among those ok
// accepts that answered the leader, or if none did, among all ok
// accepts; ties to the first by name; "" when ok accepts none.
func (p *planner) leastLoaded(load map[string]int, ok func(string) bool) string {
	best := ""
	for _, w := range p.workers {
		if !ok(w) {
			continue
		}
		if better := best == "" || p.up[w] && !p.up[best] || p.up[w] == p.up[best] && load[w] < load[best]; better {
			best = w
		}
	}
	return best
}

// kafka assigns the Kafka partitions of cur and parts: sticky, evened out
// to within one when balance, moving as few as possible.
func (p *planner) kafka(cur []*clusterpb.KafkaAssignment, parts []kafkaPartition, balance bool) []*clusterpb.KafkaAssignment {
	was := map[kafkaPartition]string{}
	for _, k := range cur {
		was[kafkaPartition{k.Topic, k.Partition}] = k.Worker
	}
	for _, kp := range parts {
		if _, ok := was[kp]; !ok {
			was[kp] = ""
		}
	}
	all := slices.SortedFunc(func(yield func(kafkaPartition) bool) {
		for kp := range was {
			if !yield(kp) {
				return
			}
		}
	}, comparePartitions)
	held := map[string][]kafkaPartition{} // by worker, in partition order
	for _, kp := range all {
		if w := was[kp]; p.worker(w) {
			held[w] = append(held[w], kp)
		}
	}
	// The workers holding the most keep base+1 partitions, extra of
	// them; the others keep base. What they give up, and what no
	// worker holds, goes to the least loaded.
	base, extra := len(all)/len(p.workers), len(all)%len(p.workers)
	byHeld := slices.Clone(p.workers)
	slices.SortStableFunc(byHeld, func(a, b string) int { return cmp.Compare(len(held[b]), len(held[a])) })
	now := map[kafkaPartition]string{}
	load := map[string]int{}
	for i, w := range byHeld {
		keep := base
		if i < extra {
			keep++
		}
		if !balance {
			keep = len(held[w])
		}
		for _, kp := range held[w][:min(keep, len(held[w]))] {
			now[kp] = w
			load[w]++
		}
	}
	out := make([]*clusterpb.KafkaAssignment, 0, len(all))
	for _, kp := range all {
		w, ok := now[kp]
		if !ok {
			w = p.leastLoaded(load, func(string) bool { return true })
			load[w]++
			if from := was[kp]; from == "" {
				p.newKafka = append(p.newKafka, kp.String())
				p.kafkaMoves = append(p.kafkaMoves, fmt.Sprintf("%s -> %s", kp, w))
			} else {
				p.kafkaMoves = append(p.kafkaMoves, fmt.Sprintf("%s %s -> %s", kp, from, w))
			}
		}
		out = append(out, &clusterpb.KafkaAssignment{Topic: kp.topic, Partition: kp.partition, Worker: w})
	}
	return out
}

// ready reports whether sp's standby holds a full, current copy.
func (p *planner) ready(sp *clusterpb.StatePartition) bool {
	return sp.Standby != "" && p.committed >= sp.StandbyReadyFrom
}

// state plans the state partitions' next epoch from cur's, evening out
// their owners when balance.
func (p *planner) state(cur []*clusterpb.StatePartition, balance bool) []*clusterpb.StatePartition {
	next := make([]*clusterpb.StatePartition, len(cur))
	for i, sp := range cur {
		next[i] = proto.CloneOf(sp)
	}
	owned := map[string]int{} // by effective owner
	p.drainLoad = map[string]int{}
	for _, sp := range cur {
		if w := effectiveOwner(sp); p.worker(w) {
			p.drainLoad[w]++
		}
	}
	for i, sp := range next {
		switch {
		case !p.worker(sp.Owner):
			sp.Moving = false
			p.replaceOwner(i, sp, owned)
		case sp.Moving && p.worker(sp.Standby) && p.ready(sp):
			sp.Owner, sp.Standby, sp.Moving = sp.Standby, sp.Owner, false
			p.current[sp.Owner] = append(p.current[sp.Owner], i)
		}
		if sp.Standby != "" && (!p.worker(sp.Standby) || sp.Standby == sp.Owner) {
			sp.Standby, sp.Moving = "", false
		}
		if w := effectiveOwner(sp); p.worker(w) {
			owned[w]++
		}
	}
	if balance {
		p.balance(next, owned)
	}
	kept := map[string]int{} // partitions kept, owned or stood by for
	for _, sp := range next {
		kept[sp.Owner]++
		if sp.Standby != "" {
			kept[sp.Standby]++
		}
	}
	for _, sp := range next {
		switch {
		case sp.Standby != "" && p.replicas < 2 && !sp.Moving:
			kept[sp.Standby]--
			sp.Standby = ""
			p.oneReplica = true
		case sp.Standby == "" && p.replicas >= 2 && len(p.workers) >= 2:
			sp.Standby = p.leastLoaded(kept, func(w string) bool { return w != sp.Owner })
			kept[sp.Standby]++
		}
	}
	return next
}

// effectiveOwner is the worker sp is owned by once its planned move, if
// any, is done.
func effectiveOwner(sp *clusterpb.StatePartition) string {
	if sp.Moving {
		return sp.Standby
	}
	return sp.Owner
}

// replaceOwner gives partition i, whose owner is no worker, to its
// standby when that is a worker holding a current copy; else, its owner
// being removed (draining), the owner keeps it while a worker gets a copy
// as its standby (a temporary one with one replica), which takes it over
// once current; else it waits for a member that is down with a current
// copy, the owner or the standby; else (the owner removed, the standby not
// current) it goes on from the standby's copy, or from nothing on the
// least owning worker.
func (p *planner) replaceOwner(i int, sp *clusterpb.StatePartition, owned map[string]int) {
	from := sp.Owner
	switch {
	case p.worker(sp.Standby) && p.ready(sp):
		sp.Owner, sp.Standby = sp.Standby, ""
	case p.draining[from]:
		if !p.worker(sp.Standby) {
			sp.Standby = p.leastLoaded(p.drainLoad, func(string) bool { return true })
		}
		p.drainLoad[sp.Standby]++
		sp.Moving = true
		p.takes[sp.Standby] = append(p.takes[sp.Standby], i)
	case p.member[from]:
		p.waits[from] = append(p.waits[from], i)
	case p.member[sp.Standby] && p.ready(sp):
		sp.Owner, sp.Standby = sp.Standby, ""
		p.waits[sp.Owner] = append(p.waits[sp.Owner], i)
	case p.worker(sp.Standby):
		p.note("state partition %d goes on from its standby %s's copy, which may lack batches: removed %s had the only current one", i, sp.Standby, from)
		sp.Owner, sp.Standby = sp.Standby, ""
	default:
		sp.Owner, sp.Standby = p.leastLoaded(owned, func(string) bool { return true }), ""
		p.note("state partition %d starts over empty on %s: removed %s had its only copy", i, sp.Owner, from)
	}
}

// balance evens out the effective owners of next (effectiveOwner) to
// within one partition per worker, partitions waiting for an owner that
// is down left aside: a partition goes to its standby at once when that
// holds a current copy, else it gets the receiver as a standby and moves
// (Moving) once that copy is current. owned counts the partitions each
// worker owns effectively.
func (p *planner) balance(next []*clusterpb.StatePartition, owned map[string]int) {
	n := 0
	for _, w := range p.workers {
		n += owned[w]
	}
	base, extra := n/len(p.workers), n%len(p.workers)
	byOwned := slices.Clone(p.workers)
	slices.SortStableFunc(byOwned, func(a, b string) int { return cmp.Compare(owned[b], owned[a]) })
	quota := map[string]int{}
	for i, w := range byOwned {
		quota[w] = base
		if i < extra {
			quota[w]++
		}
	}
	short := func(w string) bool { return owned[w] < quota[w] }
	for _, from := range byOwned {
		for owned[from] > quota[from] {
			i := p.release(next, from, short)
			sp := next[i]
			owned[from]--
			switch {
			case sp.Moving && short(sp.Owner): // the move is called off
				sp.Moving = false
				owned[sp.Owner]++
			case !sp.Moving && short(sp.Standby) && p.ready(sp):
				owned[sp.Standby]++
				sp.Owner, sp.Standby = sp.Standby, sp.Owner
			case !sp.Moving && short(sp.Standby): // its copy is on the way
				owned[sp.Standby]++
				sp.Moving = true
			default:
				to := p.leastLoaded(owned, short)
				owned[to]++
				p.takes[to] = append(p.takes[to], i)
				sp.Standby, sp.Moving = to, true
			}
		}
	}
}

// release picks a partition from owns effectively, to give up: by
// preference one its standby can take over at once, one on its way to
// from that can stay with its owner, one whose copy is on the way to a
// standby short of partitions; else the last.
func (p *planner) release(next []*clusterpb.StatePartition, from string, short func(string) bool) int {
	best, rank := -1, -1
	for i, sp := range next {
		if effectiveOwner(sp) != from {
			continue
		}
		r := 0
		switch {
		case !sp.Moving && short(sp.Standby) && p.ready(sp):
			r = 3
		case sp.Moving && short(sp.Owner):
			r = 2
		case !sp.Moving && short(sp.Standby):
			r = 1
		}
		if r >= rank {
			best, rank = i, r
		}
	}
	return best
}

func (p *planner) note(format string, args ...any) {
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// reason says why next differs from cur: the workers cur gives work that
// are lost now, and the workers with work in next only, then the moves.
func (p *planner) reason(cur, next *clusterpb.Assignment) string {
	var changes, moves []string
	if len(p.kafkaMoves) > 0 {
		changes = append(changes, "Kafka partitions "+strings.Join(p.kafkaMoves, ", "))
	}
	for i, sp := range next.State {
		if was := cur.State[i]; was.Owner != sp.Owner || was.Standby != sp.Standby {
			moves = append(moves, fmt.Sprintf("%d %s/%s -> %s/%s", i, was.Owner, cmp.Or(was.Standby, "-"), sp.Owner, cmp.Or(sp.Standby, "-")))
		}
	}
	if len(moves) > 0 {
		changes = append(changes, "state partitions (owner/standby) "+strings.Join(moves, ", "))
	}
	for _, w := range slices.Sorted(maps.Keys(p.takes)) {
		changes = append(changes, fmt.Sprintf("%s takes %s over once a batch committed with it as standby", w, partitionList(p.takes[w])))
	}
	for _, w := range slices.Sorted(maps.Keys(p.waits)) {
		changes = append(changes, fmt.Sprintf("%s: the only current copy on %s (down), waiting for it", partitionList(p.waits[w]), w))
	}
	changes = append(changes, p.notes...)
	had, has := holders(cur), holders(next)
	var causes []string
	for _, w := range had {
		if !p.worker(w) {
			causes = append(causes, w+" "+p.lost(w))
		}
	}
	for _, w := range has {
		if !slices.Contains(had, w) {
			causes = append(causes, w+" up")
		}
	}
	if len(p.newKafka) > 0 {
		causes = append(causes, "new Kafka partitions "+strings.Join(p.newKafka, ", "))
	}
	for _, w := range slices.Sorted(maps.Keys(p.current)) {
		causes = append(causes, fmt.Sprintf("%s current on %s", partitionList(p.current[w]), w))
	}
	if p.oneReplica {
		causes = append(causes, "one state replica")
	}
	if len(causes) == 0 {
		causes = append(causes, "rebalance")
	}
	return strings.Join(causes, ", ") + ": " + strings.Join(changes, "; ")
}

// partitionList names state partitions is: "state partition 3", "state
// partitions 1, 4".
func partitionList(is []int) string {
	if len(is) == 1 {
		return fmt.Sprintf("state partition %d", is[0])
	}
	s := make([]string, len(is))
	for i, n := range slices.Sorted(slices.Values(is)) {
		s[i] = fmt.Sprint(n)
	}
	return "state partitions " + strings.Join(s, ", ")
}

// holders are the workers a gives work to, sorted.
func holders(a *clusterpb.Assignment) []string {
	var ws []string
	for _, k := range a.GetKafka() {
		ws = append(ws, k.Worker)
	}
	for _, sp := range a.GetState() {
		ws = append(ws, sp.Owner, sp.Standby)
	}
	slices.Sort(ws)
	return slices.DeleteFunc(slices.Compact(ws), func(w string) bool { return w == "" })
}

// sameWork reports whether a and b give the same work to the same
// workers: their epochs and standby_ready_from aside.
func sameWork(a, b *clusterpb.Assignment) bool {
	return slices.EqualFunc(a.GetKafka(), b.GetKafka(), func(x, y *clusterpb.KafkaAssignment) bool { return proto.Equal(x, y) }) &&
		slices.EqualFunc(a.GetState(), b.GetState(), func(x, y *clusterpb.StatePartition) bool {
			return x.FirstKeyGroup == y.FirstKeyGroup && x.EndKeyGroup == y.EndKeyGroup && x.Owner == y.Owner && x.Standby == y.Standby && x.Moving == y.Moving
		})
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
