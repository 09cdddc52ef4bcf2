package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log"
	"maps"
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

// latencyRuns runs each system at each rate; the ceiling's latency is Kafka's
// own, from produce to a plain consumer. With cfg.latencyRepeats above 1 the
// systems take turns, round after round, and each system's figures at a rate
// are those of its run with the median p99 (see medianRun): a latency run's
// p99 swings with the load of a shared machine far more than a throughput
// run's rate does.
func (s *suite) latencyRuns(ctx context.Context) error {
	all := s.systems()
	repeats := s.cfg.latencyRepeats
	for _, rate := range s.cfg.rates {
		runs := make(map[string][]result)
		for round := 1; round <= repeats && ctx.Err() == nil; round++ {
			for _, name := range s.cfg.systems {
				if ctx.Err() != nil || !takesPart(name, "latency") {
					continue
				}
				label := fmt.Sprintf("latency: %s at %d records/s", name, rate)
				if repeats > 1 {
					label += fmt.Sprintf(" (round %d of %d)", round, repeats)
				}
				log.Print(label)
				r := s.latencyOnce(ctx, all[name], rate, round)
				if r.Error != "" {
					log.Printf("%s FAILED: %s", label, r.Error)
				} else {
					log.Printf("%s: p50 %.0f ms, p99 %.0f ms", label, *r.LatencyP50Ms, *r.LatencyP99Ms)
				}
				runs[name] = append(runs[name], r)
			}
		}
		s.addMedians(runs, latencyP99, false, func(m *result, p99s []float64) { m.RepeatsLatencyP99 = p99s })
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

// scanNow records the markers in one line of the system's stdout, read
// now. It reads the clock only for lines with a marker: a system in update
// mode writes some 200,000 lines a second.
func (m *markerClock) scanNow(line []byte) {
	if bytes.Contains(line, []byte(markerPrefix)) {
		m.scan(line, time.Now())
	}
}

// scan records the markers in one line of the system's stdout, read at at.
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

// timeline is every marker, in order, as one JSON line: its number, when it
// was produced and when it came out (null if it never did), in Unix
// microseconds. Set beside the engine's progress of each batch, it shows
// what a latency spike was made of: which batches the late markers waited
// for, and how long the backlog behind them took to drain.
func (m *markerClock) timeline() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b []byte
	for _, n := range slices.Sorted(maps.Keys(m.mu.produced)) {
		b = fmt.Appendf(b, `{"marker":%d,"produced_us":%d,"output_us":`, n, m.mu.produced[n].UnixMicro())
		if s, ok := m.mu.seen[n]; ok {
			b = strconv.AppendInt(b, s.UnixMicro(), 10)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, "}\n"...)
	}
	return b
}

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

// pacedProducer produces generated lines at a steady pace, some carrying a
// marker, until stopped. The pace can change while it runs.
type pacedProducer struct {
	cl    *kgo.Client
	topic string
	lines *linePool
	clock *markerClock

	// Owned by run until it returns.
	produced  int64 // records
	markers   int
	paceStart time.Time // when the current pace took effect
	atPace    int64     // records produced at the current pace

	mu struct {
		sync.Mutex
		rate  float64 // records/s
		every int     // a marker every so many records
		err   error
	}
}

// setPace sets the production rate and how many records apart markers are.
func (p *pacedProducer) setPace(rate float64, every int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.rate, p.mu.every = rate, max(every, 1)
}

func (p *pacedProducer) pace() (float64, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.rate, p.mu.every
}

func (p *pacedProducer) firstErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.err
}

// achievedRate is the rate reached at the current pace; call after run
// returned.
func (p *pacedProducer) achievedRate(end time.Time) float64 {
	return float64(p.atPace) / end.Sub(p.paceStart).Seconds()
}

// run produces until ctx ends, then flushes what it produced.
func (p *pacedProducer) run(ctx context.Context) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var (
		due       float64 // records that should have been produced by now
		last      = time.Now()
		sinceMark int
		lastRate  float64
	)
	for {
		select {
		case <-ctx.Done():
			p.cl.Flush(context.Background())
			return
		case now := <-tick.C:
			rate, every := p.pace()
			if rate != lastRate {
				p.paceStart, p.atPace, lastRate = now, 0, rate
			}
			due += rate * now.Sub(last).Seconds()
			last = now
			for ; float64(p.produced) < due; p.produced++ {
				p.atPace++
				// The pool's lines are never modified, so records share them.
				line := p.lines.line()
				if sinceMark++; sinceMark >= every {
					sinceMark = 0
					line = markerLine(line, p.markers)
					p.clock.produced(p.markers, time.Now())
					p.markers++
				}
				rec := &kgo.Record{Topic: p.topic, Value: line}
				// Not ctx: franz-go fails the records still buffered when
				// their context ends, and the markers among them, timed as
				// produced, would never come out of any system.
				p.cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
					if err != nil {
						p.mu.Lock()
						p.mu.err = cmp.Or(p.mu.err, err)
						p.mu.Unlock()
					}
				})
			}
		}
	}
}

// poolSeconds is how long production at a run's rate takes to go round its
// line pool.
const poolSeconds = 5

// startupRate is the production rate, all markers, while a system starts:
// a trickle, so that no backlog builds up before it is ready.
const startupRate = 10

// latencyOnce measures one system's produce-to-output latency at one rate:
// it starts the system in update mode on a fresh topic, produces a trickle of
// markers until the first one comes out, then produces at the rate, lets the
// system settle for cfg.latencyWarmup, and times the markers produced in the
// next cfg.latencyDuration from their produce call to the moment their word
// first appears on the system's stdout.
// round numbers a repeated run; later rounds get their own topic, work
// directory and log.
func (s *suite) latencyOnce(ctx context.Context, sys system, rate, round int) result {
	runName := fmt.Sprintf("latency-%d", rate)
	r := result{System: sys.name, Run: runName, Rate: rate}
	fail := func(err error) result { r.Error = err.Error(); return r }
	topic := fmt.Sprintf("lat-%s-%d", sys.name, rate)
	id := sys.name
	if round > 1 {
		topic += "-" + strconv.Itoa(round)
		id += "-" + strconv.Itoa(round)
	}
	if err := s.cluster.CreateTopic(ctx, topic, 3, 2); err != nil {
		return fail(fmt.Errorf("create topic %s: %w", topic, err))
	}
	j := job{brokers: s.cluster.BootstrapServers(), topic: topic, latency: true,
		dir: filepath.Join(s.work, runName+"-"+id)}
	if err := os.MkdirAll(j.dir, 0o755); err != nil {
		return fail(err)
	}
	cl, err := newProducer(s.cluster.Addrs(), 0)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()

	// Generated before the system starts, so that it does not compete with it.
	lines := newLinePool(newGenerator(s.cfg.seed+uint64(rate)), rate*poolSeconds)
	clock := newMarkerClock()
	logPath := filepath.Join(s.logs, runName+"-"+id+".log")
	cmd, err := sys.command(j)
	if err != nil {
		return fail(err)
	}
	if err := warmMemory(s.cfg.warmMemory); err != nil {
		return fail(err)
	}
	c, err := startChild(cmd, logPath, clock.scanNow)
	if err != nil {
		return fail(err)
	}
	prodCtx, stopProducing := context.WithCancel(ctx)
	p := &pacedProducer{cl: cl, topic: topic, lines: lines, clock: clock}
	p.setPace(startupRate, 1)
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

	// watch waits for ready (nil: nothing) or for d to pass; it fails if the
	// system exits or ctx ends first.
	watch := func(ready <-chan struct{}, d time.Duration) (isReady bool, err error) {
		select {
		case <-ready:
			return true, nil
		case <-time.After(d):
			return false, nil
		case <-c.exited:
			return false, fmt.Errorf("%s exited during the run: %v", sys.name, c.err)
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	isReady, err := watch(clock.first(), s.cfg.latencyStartup)
	if err == nil && !isReady {
		err = fmt.Errorf("no marker came out of %s within %s (see %s)", sys.name, s.cfg.latencyStartup, logPath)
	}
	if err != nil {
		stopAll()
		return fail(err)
	}
	p.setPace(float64(rate), rate/s.cfg.markersPerSec)
	from := time.Now().Add(s.cfg.latencyWarmup)
	until := from.Add(s.cfg.latencyDuration)
	if _, err := watch(nil, time.Until(until)); err != nil {
		stopAll()
		return fail(err)
	}
	stopProducing()
	<-produced
	r.RecordsPerSec = ptr(p.achievedRate(time.Now()))
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
	if s.cfg.keep {
		if err := os.WriteFile(filepath.Join(j.dir, "markers.jsonl"), clock.timeline(), 0o644); err != nil {
			log.Printf("latency: %s: keeping the markers' timeline: %v", sys.name, err)
		}
	}
	if len(lat) == 0 {
		return fail(fmt.Errorf("none of the %d markers produced while measuring came out of %s", missing, sys.name))
	}
	r.LatencyP50Ms, r.LatencyP99Ms = percentile(lat, 50), percentile(lat, 99)
	if sys.progress {
		// Batch durations explain the latency; a missing report is no failure here.
		if st, err := readProgress(j.progressPath()); err == nil {
			r.Batches, r.BatchP50Ms, r.BatchP99Ms = st.batches, st.p50, st.p99
		}
	}
	if missing > 0 {
		r.Error = fmt.Sprintf("%d of %d markers did not come out within %s of the end of production", missing, missing+len(lat), drainTimeout)
	}
	return r
}
