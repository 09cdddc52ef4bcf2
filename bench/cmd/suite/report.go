package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gostream/gostream/kafkatest"
)

// result is one system's figures in one run; bench/README.md defines each.
// A nil pointer is a figure that does not apply (or could not be measured).
type result struct {
	System         string   `json:"system"`
	Run            string   `json:"run"` // throughput, latency-RATE, state or words
	Rate           int      `json:"rate,omitempty"`
	Records        int64    `json:"records"`
	RecordsPerSec  *float64 `json:"records_per_sec"`
	WallS          *float64 `json:"wall_s"`
	FirstBatchS    *float64 `json:"first_batch_s"`
	Batches        int      `json:"batches,omitempty"`
	BatchP50Ms     *float64 `json:"batch_p50_ms"`
	BatchP99Ms     *float64 `json:"batch_p99_ms"`
	LatencyP50Ms   *float64 `json:"latency_p50_ms"`
	LatencyP99Ms   *float64 `json:"latency_p99_ms"`
	LatencyMarkers int      `json:"latency_markers,omitempty"`
	LatencyMissing int      `json:"latency_missing,omitempty"`
	PeakRSSBytes   int64    `json:"peak_rss_bytes"`
	CPUS           float64  `json:"cpu_s"`
	CountsMatch    *bool    `json:"counts_match"`
	// The machine's CPU while the system ran: the share its processes used
	// and the share the hypervisor took for other guests, in percent.
	MachineBusyPct  *float64 `json:"machine_busy_pct"`
	MachineStealPct *float64 `json:"machine_steal_pct"`
	// Repeats holds the records/s of every run of a repeated run, in the
	// order they ran; the other figures are the median run's.
	Repeats []float64 `json:"repeats_records_per_sec,omitempty"`
	// RepeatsLatencyP99 holds the latency p99 of every run of a repeated
	// latency run, in the order they ran; the other figures are the median
	// run's.
	RepeatsLatencyP99 []float64 `json:"repeats_latency_p99_ms,omitempty"`
	Error             string    `json:"error,omitempty"`
}

func (r *result) setUsage(u usage) {
	r.PeakRSSBytes, r.CPUS = u.peakRSS, u.cpuSeconds
	r.MachineBusyPct, r.MachineStealPct = u.machineBusy, u.machineSteal
}

// report is latest.json.
type report struct {
	StartedAt time.Time         `json:"started_at"`
	Machine   map[string]string `json:"machine"`
	Config    map[string]any    `json:"config"`
	Results   []result          `json:"results"`
}

// report prints the table and writes latest.json and latest.png.
func (s *suite) report(started time.Time) error {
	s.printTable()
	rep := report{
		StartedAt: started.UTC(),
		Machine:   s.machine(),
		Config: map[string]any{
			"records": s.cfg.records, "seed": s.cfg.seed, "systems": s.cfg.systems, "runs": s.cfg.runs,
			"rates": s.cfg.rates, "state_keys": s.cfg.stateKeys, "latency_duration_s": s.cfg.latencyDuration.Seconds(),
			"spark_driver_memory": s.cfg.sparkDriverMemory, "shuffle_partitions": s.cfg.shufflePartitions,
			"batches": s.cfg.batches, "throughput_repeats": s.cfg.repeats, "latency_repeats": s.cfg.latencyRepeats,
			"topic_partitions": 3, "replication_factor": 2, "brokers": 3,
			"words_records": s.cfg.wordsRecords, "kstreams_heap": s.cfg.kstreamsHeap,
			"kstreams_commit_interval_ms": kstreamsCommitMs, "kstreams_cache_max_bytes": kstreamsCacheBytes,
		},
		Results: s.results,
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	out := filepath.Join(s.cfg.results, "latest.json")
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	log.Printf("wrote %s", out)
	png := filepath.Join(s.cfg.results, "latest.png")
	cmd := exec.Command(s.cfg.python, s.cfg.chart, out, png)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chart: %s %s: %w\n%s(is matplotlib installed? bench/run.sh installs it into the venv)",
			s.cfg.python, s.cfg.chart, err, msg)
	}
	log.Printf("wrote %s", png)
	for _, r := range s.results {
		if r.Error != "" {
			return fmt.Errorf("some runs failed (see the table and %s)", s.logs)
		}
	}
	return nil
}

func (s *suite) printTable() {
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "run\tsystem\trecords\trec/s\twall s\t1st batch s\tbatch p50 ms\tbatch p99 ms\tlat p50 ms\tlat p99 ms\tpeak RSS MiB\tCPU s\tbusy %\tsteal %\tcounts\t")
	for _, r := range s.results {
		counts := "-"
		if r.CountsMatch != nil {
			counts = map[bool]string{true: "match", false: "DIFFER"}[*r.CountsMatch]
		}
		if r.Error != "" && r.CountsMatch == nil {
			counts = "FAILED"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.1f\t%s\t%s\t%s\t\n",
			r.Run, r.System, r.Records, fmtOpt(r.RecordsPerSec, "%.0f"), fmtOpt(r.WallS, "%.1f"),
			fmtOpt(r.FirstBatchS, "%.1f"), fmtOpt(r.BatchP50Ms, "%.0f"), fmtOpt(r.BatchP99Ms, "%.0f"),
			fmtOpt(r.LatencyP50Ms, "%.0f"), fmtOpt(r.LatencyP99Ms, "%.0f"),
			float64(r.PeakRSSBytes)/(1<<20), r.CPUS, fmtOpt(r.MachineBusyPct, "%.0f"), fmtOpt(r.MachineStealPct, "%.0f"), counts)
	}
	w.Flush()
	for _, r := range s.results {
		if len(r.Repeats) > 0 {
			rates := make([]string, len(r.Repeats))
			for i, v := range r.Repeats {
				rates[i] = humanCount(v)
			}
			fmt.Printf("%s/%s: the median of %d runs, which made %s records/s\n", r.Run, r.System, len(r.Repeats), strings.Join(rates, ", "))
		}
		if len(r.RepeatsLatencyP99) > 0 {
			p99s := make([]string, len(r.RepeatsLatencyP99))
			for i, v := range r.RepeatsLatencyP99 {
				p99s[i] = fmt.Sprintf("%.0f", v)
			}
			fmt.Printf("%s/%s: the median of %d runs by latency p99, which measured %s ms\n", r.Run, r.System, len(r.RepeatsLatencyP99), strings.Join(p99s, ", "))
		}
	}
	for _, r := range s.results {
		if r.Error != "" {
			fmt.Printf("\n%s/%s: %s\n", r.Run, r.System, r.Error)
		}
	}
}

func fmtOpt(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

// machine describes the host the figures were measured on.
func (s *suite) machine() map[string]string {
	m := map[string]string{
		"cores":   fmt.Sprint(runtime.NumCPU()),
		"go":      runtime.Version(),
		"kafka":   kafkatest.KafkaVersion,
		"spark":   s.cfg.sparkVersion,
		"os_arch": runtime.GOOS + "/" + runtime.GOARCH,
	}
	if v, err := kstreamsVersion(s.cfg.kstreamsLibs); s.cfg.kstreamsLibs != "" && err == nil {
		m["kafka_streams"] = v
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m["cpu"] = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		m["memory"] = v
	}
	if out, err := exec.Command("java", "-version").CombinedOutput(); err == nil {
		first, _, _ := strings.Cut(string(out), "\n")
		m["java"] = strings.TrimSpace(first)
	}
	return m
}

// procField returns the value of the first "name : value" line of a /proc file.
func procField(path, name string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
