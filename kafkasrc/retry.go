package kafkasrc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// How calls retry errors that may pass: the pause between attempts doubles
// from retryBackoffMin to retryBackoffMax; a warning goes out once the
// trouble lasted warnAfter, then every warnEvery; probeTimeout bounds the
// look at the cluster that a warning or a final error describes.
const (
	retryBackoffMin = 100 * time.Millisecond
	retryBackoffMax = 2 * time.Second
	warnAfter       = 2 * time.Second
	warnEvery       = 10 * time.Second
	probeTimeout    = 3 * time.Second
)

// retriable tells whether err may pass if the call is tried again: Kafka
// says so (a leader moving or being elected, a partition not yet loaded by
// its new leader), or no broker answered in time or a connection broke.
// A missing topic, a bad option, a closed client, a cancelled call and
// Kafka errors that will not pass are final.
func retriable(err error) bool {
	var ke *kerr.Error
	switch {
	case errors.Is(err, ErrUnknownTopic), errors.Is(err, ErrInvalidConfig), errors.Is(err, ErrInvalidOffsets),
		errors.Is(err, ErrDataLoss), errors.Is(err, kgo.ErrClientClosed), errors.Is(err, context.Canceled):
		return false
	case errors.As(err, new(*kadm.AuthError)):
		return false
	case errors.As(err, &ke):
		return ke.Retriable
	}
	return true // no answer in time, a refused or broken connection: the broker may come back
}

// retrier paces one call's attempts while they fail with errors that may
// pass: it backs off, warns while the trouble lasts and gives up after the
// Admin's retry timeout with an error describing the cluster.
type retrier struct {
	a      *Admin
	what   string   // the call, as "listing offsets of logs"
	topics []string // whose partitions a warning or the final error looks at
	start  time.Time
	warned time.Time // last warning, zero before the first
	pause  time.Duration
}

func (a *Admin) retrier(what string, topics []string) *retrier {
	return &retrier{a: a, what: what, topics: topics, start: time.Now()}
}

// attemptTimeout bounds the next attempt: the Admin's timeout, cut to what
// is left of the time the call may still retry (but at least
// retryBackoffMin), so that a call gives up about when it should.
func (r *retrier) attemptTimeout() time.Duration {
	budget := r.a.retryTimeout
	if !r.a.answered.Load() {
		budget = r.a.timeout
	}
	return min(r.a.timeout, max(budget-time.Since(r.start), retryBackoffMin))
}

// wait is called after a failed attempt. It returns nil, after a pause,
// when the call should be tried again, else the error to return: err
// itself when it will not pass, ctx's error once ctx ends, ErrUnreachable
// when no broker ever answered this Admin within its timeout, ErrUnavailable
// once the retry timeout has passed.
func (r *retrier) wait(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !retriable(err) {
		return err
	}
	waited := time.Since(r.start)
	if !r.a.answered.Load() {
		if waited >= r.a.timeout {
			return wrapf(ErrUnreachable, err, "kafka: no broker reachable at %s after %v (is Kafka running? check --brokers)",
				r.a.brokerList(), r.a.timeout)
		}
	} else if waited >= r.a.retryTimeout {
		return r.giveUp(ctx, err, waited)
	} else if waited >= warnAfter && time.Since(r.warned) >= warnEvery {
		r.warned = time.Now()
		h := r.a.health(ctx, r.topics)
		r.a.log.Warn("kafka: waiting for Kafka to recover", "call", r.what, "waited", waited.Round(time.Second),
			"gives_up_in", (r.a.retryTimeout - waited).Round(time.Second), "partitions_without_leader", listOrNone(h.leaderless),
			"brokers_answering", listOrNone(h.answering), "brokers_not_answering", listOrNone(h.silent), "err", err)
	}
	r.pause = min(max(2*r.pause, retryBackoffMin), retryBackoffMax)
	t := time.NewTimer(r.pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// giveUp returns the error of a call that failed for waited with errors
// that may pass, the last being err, describing the cluster now.
func (r *retrier) giveUp(ctx context.Context, err error, waited time.Duration) error {
	h := r.a.health(ctx, r.topics)
	sentinel := ErrUnavailable
	if len(h.answering) == 0 {
		sentinel = errors.Join(ErrUnavailable, ErrUnreachable)
	}
	return wrapf(sentinel, err, "kafka: %s failed for %v with errors that may pass (last: %v); %s (check the brokers and their logs; %s)",
		r.what, waited.Round(time.Second), err, h, r.a.retryHint)
}

// health is what the cluster looks like from here: which brokers answer,
// and which partitions of some topics have no leader or one that does not
// answer.
type health struct {
	answering, silent []string // "1 at host:port", or a seed's address
	leaderless        []string // "topic/partition", with why when the leader is known
	metaErr           error    // why no metadata came, if none did
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

func (h health) String() string {
	var b strings.Builder
	list := listOrNone
	fmt.Fprintf(&b, "brokers answering: %s; not answering: %s", list(h.answering), list(h.silent))
	if h.metaErr != nil {
		fmt.Fprintf(&b, "; no metadata: %v", h.metaErr)
	} else {
		fmt.Fprintf(&b, "; partitions without a leader: %s", list(h.leaderless))
	}
	return b.String()
}

// health looks at the cluster within probeTimeout: it asks for the topics'
// metadata, then asks every broker it lists and every seed broker for its
// API versions, in parallel.
func (a *Admin) health(ctx context.Context, topics []string) health {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var h health
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // none: brokers only
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, a.cl)
	if err != nil {
		h.metaErr = err
		resp = kmsg.NewPtrMetadataResponse()
	}
	// The brokers to ask: those in the metadata, by id, then the seeds
	// at other addresses (a crashed broker leaves the metadata once the
	// controller fences it).
	type target struct {
		name string
		b    *kgo.Broker
	}
	var targets []target
	known := map[string]bool{}
	for _, b := range resp.Brokers {
		addr := net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
		known[addr] = true
		targets = append(targets, target{fmt.Sprintf("%d at %s", b.NodeID, addr), a.cl.Broker(int(b.NodeID))})
	}
	if seeds := a.cl.SeedBrokers(); len(seeds) == len(a.brokers) {
		for i, addr := range a.brokers {
			if !known[addr] {
				targets = append(targets, target{addr, seeds[i]})
			}
		}
	}
	answered := make([]bool, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			_, err := t.b.Request(ctx, kmsg.NewPtrApiVersionsRequest())
			answered[i] = err == nil
		})
	}
	wg.Wait()
	up := map[int32]bool{}
	for i, t := range targets {
		if answered[i] {
			h.answering = append(h.answering, t.name)
		} else {
			h.silent = append(h.silent, t.name)
		}
		if i < len(resp.Brokers) {
			up[resp.Brokers[i].NodeID] = answered[i]
		}
	}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			h.leaderless = append(h.leaderless, fmt.Sprintf("%s (%v)", *t.Topic, err))
			continue
		}
		slices.SortFunc(t.Partitions, func(x, y kmsg.MetadataResponseTopicPartition) int { return int(x.Partition - y.Partition) })
		for _, p := range t.Partitions {
			switch {
			case p.Leader < 0:
				h.leaderless = append(h.leaderless, fmt.Sprintf("%s/%d (no leader; replicas %v, in sync %v)", *t.Topic, p.Partition, p.Replicas, p.ISR))
			case !up[p.Leader]:
				h.leaderless = append(h.leaderless, fmt.Sprintf("%s/%d (leader %d does not answer)", *t.Topic, p.Partition, p.Leader))
			}
		}
	}
	return h
}
