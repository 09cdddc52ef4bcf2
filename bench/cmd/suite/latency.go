package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// drainTimeout bounds the wait for markers still in flight when production
// stops.
const drainTimeout = 30 * time.Second

// latencyRuns runs each system except the ceiling at each rate.
func (s *suite) latencyRuns(ctx context.Context) error {
	all := s.systems()
	for _, rate := range s.cfg.rates {
		for _, name := range s.cfg.systems {
			if name == "ceiling" || ctx.Err() != nil {
				continue
			}
			log.Printf("latency: %s at %d records/s", name, rate)
			r := s.latencyOnce(ctx, all[name], rate)
			if r.Error != "" {
				log.Printf("latency: %s at %d records/s FAILED: %s", name, rate, r.Error)
			} else {
				log.Printf("latency: %s at %d records/s: p50 %.0f ms, p99 %.0f ms", name, rate, *r.LatencyP50Ms, *r.LatencyP99Ms)
			}
			s.results = append(s.results, r)
		}
	}
	return ctx.Err()
}

// markerClock records when each marker was produced and when it first came
// out of the system; safe for concurrent use.
type markerClock struct {
	mu struct {
		sync.Mutex
		produced map[int]time.Time
		seen     map[int]time.Time
		first    chan struct{} // closed when the first marker is seen
	}
}

func newMarkerClock() *markerClock {
	m := &markerClock{}
	m.mu.produced = make(map[int]time.Time)
	m.mu.seen = make(map[int]time.Time)
	m.mu.first = make(chan struct{})
	return m
}

func (m *markerClock) produced(n int, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.produced[n] = at
}

// scan records the markers in one line of the system's stdout.
func (m *markerClock) scan(line []byte, at time.Time) {
	prefix := []byte(markerPrefix)
	for {
		i := bytes.Index(line, prefix)
		if i < 0 {
			return
		}
		line = line[i+len(prefix):]
		end := 0
		for end < len(line) && line[end] >= '0' && line[end] <= '9' {
			end++
		}
		n, err := strconv.Atoi(string(line[:end]))
		if err != nil {
			continue
		}
		m.mu.Lock()
		if _, ok := m.mu.seen[n]; !ok {
			if len(m.mu.seen) == 0 {
				close(m.mu.first)
			}
			m.mu.seen[n] = at
		}
		m.mu.Unlock()
	}
}

func (m *markerClock) first() <-chan struct{} { return m.mu.first }

// latencies returns the sorted latencies, in ms, of markers produced in
// [from, until), and how many of those never came out.
func (m *markerClock) latencies(from, until time.Time) (lat []float64, missing int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for n, p := range m.mu.produced {
		if p.Before(from) || !p.Before(until) {
			continue
		}
		if s, ok := m.mu.seen[n]; ok {
			lat = append(lat, float64(s.Sub(p))/float64(time.Millisecond))
		} else {
			missing++
		}
	}
	slices.Sort(lat)
	return lat, missing
}

// pacedProducer produces generated lines at a steady rate, every k-th
// carrying a marker, until stopped.
type pacedProducer struct {
	cl       *kgo.Client
	topic    string
	rate     int
	every    int // a marker every so many records
	gen      *generator
	clock    *markerClock
	started  time.Time
	produced int64 // owned by run until it returns
	mu       struct {
		sync.Mutex
		err error
	}
}

func (p *pacedProducer) firstErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.err
}

// run produces until ctx ends, then flushes.
func (p *pacedProducer) run(ctx context.Context) {
	p.started = time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			p.cl.Flush(context.Background())
			return
		case now := <-tick.C:
			due := int64(now.Sub(p.started).Seconds() * float64(p.rate))
			for ; p.produced < due; p.produced++ {
				line := p.gen.line()
				if p.produced%int64(p.every) == 0 {
					n := int(p.produced / int64(p.every))
					line = p.gen.appendMarker(n)
					p.clock.produced(n, time.Now())
				}
				rec := &kgo.Record{Topic: p.topic, Value: append([]byte(nil), line...)}
				p.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
					if err != nil && ctx.Err() == nil {
						p.mu.Lock()
						p.mu.err = cmp.Or(p.mu.err, err)
						p.mu.Unlock()
					}
				})
			}
		}
	}
}

// latencyOnce measures one system's produce-to-output latency at one rate:
// it starts the system in update mode on a fresh topic, produces at the rate,
// waits for the first marker to come out, lets the system settle for
// cfg.latencyWarmup, then times the markers produced in the next
// cfg.latencyDuration from their produce call to the moment their word
// first appears on the system's stdout.
func (s *suite) latencyOnce(ctx context.Context, sys system, rate int) result {
	runName := fmt.Sprintf("latency-%d", rate)
	r := result{System: sys.name, Run: runName, Rate: rate}
	fail := func(err error) result { r.Error = err.Error(); return r }
	topic := fmt.Sprintf("lat-%s-%d", sys.name, rate)
	if err := s.cluster.CreateTopic(ctx, topic, 3, 2); err != nil {
		return fail(fmt.Errorf("create topic %s: %w", topic, err))
	}
	j := job{brokers: s.cluster.BootstrapServers(), topic: topic, latency: true,
		dir: filepath.Join(s.work, runName+"-"+sys.name)}
	if err := os.MkdirAll(j.dir, 0o755); err != nil {
		return fail(err)
	}
	cl, err := newProducer(s.cluster.Addrs(), 0)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()

	clock := newMarkerClock()
	logPath := filepath.Join(s.logs, runName+"-"+sys.name+".log")
	c, err := startChild(sys.command(j), logPath, clock.scan)
	if err != nil {
		return fail(err)
	}
	prodCtx, stopProducing := context.WithCancel(ctx)
	p := &pacedProducer{cl: cl, topic: topic, rate: rate, every: max(1, rate/s.cfg.markersPerSec),
		gen: newGenerator(s.cfg.seed + uint64(rate)), clock: clock}
	produced := make(chan struct{})
	go func() { defer close(produced); p.run(prodCtx) }()
	stopAll := func() {
		stopProducing()
		<-produced
		c.stop()
		r.setUsage(c.cost)
		r.Records = p.produced
		r.WallS = ptr(c.cost.end.Sub(c.cost.start).Seconds())
	}

	select {
	case <-clock.first():
	case <-c.exited:
		stopAll()
		return fail(fmt.Errorf("%s exited before its first output: %v", sys.name, c.err))
	case <-time.After(s.cfg.latencyStartup):
		stopAll()
		return fail(fmt.Errorf("no marker came out of %s within %s (see %s)", sys.name, s.cfg.latencyStartup, logPath))
	case <-ctx.Done():
		stopAll()
		return fail(ctx.Err())
	}
	from := time.Now().Add(s.cfg.latencyWarmup)
	until := from.Add(s.cfg.latencyDuration)
	select {
	case <-time.After(time.Until(until)):
	case <-c.exited:
		stopAll()
		return fail(fmt.Errorf("%s exited during the run: %v", sys.name, c.err))
	case <-ctx.Done():
		stopAll()
		return fail(ctx.Err())
	}
	stopProducing()
	<-produced
	r.RecordsPerSec = ptr(float64(p.produced) / time.Since(p.started).Seconds())
	deadline := time.Now().Add(drainTimeout)
	for time.Now().Before(deadline) {
		if _, missing := clock.latencies(from, until); missing == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopAll()
	if err := p.firstErr(); err != nil {
		return fail(fmt.Errorf("produce to %s: %w", topic, err))
	}
	lat, missing := clock.latencies(from, until)
	r.LatencyMarkers, r.LatencyMissing = len(lat), missing
	if len(lat) == 0 {
		return fail(fmt.Errorf("none of the %d markers produced while measuring came out of %s", missing, sys.name))
	}
	r.LatencyP50Ms, r.LatencyP99Ms = percentile(lat, 50), percentile(lat, 99)
	if missing > 0 {
		r.Error = fmt.Sprintf("%d of %d markers did not come out within %s of the end of production", missing, missing+len(lat), drainTimeout)
	}
	return r
}
