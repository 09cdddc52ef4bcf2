package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// memoryJobs are the memory run's queries, all started on a backlog:
//   - memory-keys, a continuous query (trigger default, update mode, output
//     to /dev/null) over the state run's distinct words with no
//     maxOffsetsPerTrigger, the case that once took the most memory (one
//     batch of every word);
//   - memory-backlog, the same query over the throughput run's lines (a
//     small state) in batches of the throughput run's maxOffsetsPerTrigger;
//   - memory-state, the state run's query (available-now, complete mode).
func (s *suite) memoryJobs() []struct {
	run string
	j   job
} {
	keyLines := (s.cfg.stateKeys + s.cfg.keysLine - 1) / s.cfg.keysLine
	backlog := s.bulkJob("logs", s.cfg.records, s.cfg.batches, false)
	backlog.continuous = true
	return []struct {
		run string
		j   job
	}{
		{"memory-keys", job{topic: "keys", records: int64(keyLines), continuous: true}},
		{"memory-backlog", backlog},
		{"memory-state", s.bulkJob("keys", keyLines, s.cfg.stateBatches, true)},
	}
}

// memoryRun measures gostream's peak RSS and speed in memoryJobs, with
// -gostream and, if set, -gostream-before (an earlier build, to compare),
// taking turns for -memory-repeats rounds; each binary's figures are those
// of its median run by records/s. A run ends when the progress reports
// count every record of the topic; its wall time is until then.
func (s *suite) memoryRun(ctx context.Context) error {
	if err := s.loadKeys(ctx); err != nil {
		return err
	}
	if err := s.loadLogs(ctx); err != nil {
		return err
	}
	binaries := []struct{ name, path string }{{"gostream", s.cfg.gostream}}
	if s.cfg.gostreamBefore != "" {
		binaries = append([]struct{ name, path string }{{"gostream-before", s.cfg.gostreamBefore}}, binaries...)
	}
	for _, mc := range s.memoryJobs() {
		j := mc.j
		runs := make(map[string][]result)
		for round := 1; round <= s.cfg.memoryRepeats && ctx.Err() == nil; round++ {
			for _, b := range binaries {
				log.Printf("%s (round %d of %d): %s over %d records", mc.run, round, s.cfg.memoryRepeats, b.name, j.records)
				r := s.countedOnce(ctx, b.name, b.path, mc.run, j, round)
				if r.Error != "" {
					log.Printf("%s: %s FAILED: %s", mc.run, b.name, r.Error)
				} else {
					log.Printf("%s: %s counted every record in %.1fs, peak RSS %d MiB", mc.run, b.name, *r.WallS, r.PeakRSSBytes>>20)
				}
				runs[b.name] = append(runs[b.name], r)
			}
		}
		for _, b := range binaries {
			m, rates := medianRun(runs[b.name], recordsPerSec, true)
			m.Repeats = rates
			s.results = append(s.results, m)
		}
	}
	return nil
}

// countedOnce runs gostream's query of j with binary bin until its progress
// reports count j.records records, then stops it if it runs on.
func (s *suite) countedOnce(ctx context.Context, name, bin, runName string, j job, round int) result {
	r := result{System: name, Run: runName, Records: j.records}
	fail := func(err error) result { r.Error = err.Error(); return r }
	id := fmt.Sprintf("%s-%s-%d", runName, name, round)
	j.brokers, j.dir = s.cluster.BootstrapServers(), filepath.Join(s.work, id)
	if err := os.MkdirAll(j.dir, 0o755); err != nil {
		return fail(err)
	}
	args := s.gostreamArgs(j)
	if bin == s.cfg.gostream {
		args = append(args, s.memoryArgs()...)
	}
	if err := warmMemory(s.cfg.warmMemory); err != nil {
		return fail(err)
	}
	c, err := startChild(exec.Command(bin, args...), filepath.Join(s.logs, id+".log"), nil)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.exited:
			if _, rows := progressSoFar(j.progressPath()); c.err != nil || rows < j.records {
				return fail(fmt.Errorf("%s exited after counting %d of %d records: %v", name, rows, j.records, c.err))
			}
		case <-ctx.Done():
			c.stop()
			return fail(ctx.Err())
		case <-tick.C:
		}
		if _, rows := progressSoFar(j.progressPath()); rows >= j.records {
			break
		}
	}
	counted := time.Now()
	c.stop()
	if c.cost.end.Before(counted) {
		counted = c.cost.end // it stopped by itself
	}
	r.setUsage(c.cost)
	wall := counted.Sub(c.start).Seconds()
	r.WallS, r.RecordsPerSec = &wall, ptr(float64(j.records)/wall)
	if st, err := readProgress(j.progressPath()); err == nil {
		r.Batches = st.batches
		r.FirstBatchS = ptr(st.firstBatch.Sub(c.start).Seconds())
		r.BatchP50Ms, r.BatchP99Ms = st.p50, st.p99
	}
	return r
}

// loadKeys loads the state run's distinct words into keys, once.
func (s *suite) loadKeys(ctx context.Context) error {
	if s.loaded["keys"] != nil {
		return nil
	}
	gen := newGenerator(s.cfg.seed)
	per := s.cfg.keysLine
	lines := (s.cfg.stateKeys + per - 1) / per
	err := s.load(ctx, "keys", lines, func(i int) []byte {
		return gen.keyLine(i*per, min(per, s.cfg.stateKeys-i*per))
	})
	if err != nil {
		return err
	}
	s.loaded["keys"] = gen.expected()
	return nil
}

// loadLogs loads the throughput run's lines into logs, once.
func (s *suite) loadLogs(ctx context.Context) error {
	if s.loaded["logs"] != nil {
		return nil
	}
	gen := newGenerator(s.cfg.seed)
	if err := s.load(ctx, "logs", s.cfg.records, func(int) []byte { return gen.line() }); err != nil {
		return err
	}
	s.loaded["logs"] = gen.expected()
	return nil
}

// memoryArgs are gostream's --memory flag, if -gostream-memory is set.
func (s *suite) memoryArgs() []string {
	if s.cfg.gostreamMemory == "" {
		return nil
	}
	return []string{"--memory", s.cfg.gostreamMemory}
}
