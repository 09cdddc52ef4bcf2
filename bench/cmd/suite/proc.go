package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sampleEvery is how often the process tree's memory and CPU are sampled.
const sampleEvery = 100 * time.Millisecond

// clockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTicks = 100

// usage is what a child process tree cost.
type usage struct {
	start, end time.Time
	peakRSS    int64   // bytes; see sampleTree and child.exited
	cpuSeconds float64 // user + system, children included
	// The machine's CPU while the child ran, in percent: used by any
	// process (the brokers, the suite, the child), and taken by the
	// hypervisor for other guests.
	machineBusy, machineSteal *float64
}

// child is a benchmarked process: started in its own process group, its tree
// sampled until it exits.
type child struct {
	cmd     *exec.Cmd
	logPath string
	start   time.Time
	exited  chan struct{} // closed once the process exited and err and cost are set
	err     error
	cost    usage
}

// startChild starts cmd with stderr to logPath. When stdout is non-nil it
// receives each line of the child's stdout as soon as it is read;
// otherwise stdout also goes to the log. The process trees rooted at with
// (running processes the child works with, such as a cluster's workers)
// are sampled with the child's: their memory is summed with its, and their
// CPU counted from the child's start.
func startChild(cmd *exec.Cmd, logPath string, stdout func(line []byte), with ...int) (*child, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	var pipe io.ReadCloser
	if stdout == nil {
		cmd.Stdout = logFile
	} else if pipe, err = cmd.StdoutPipe(); err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start, cpu0 := time.Now(), readMachineCPU()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	c := &child{cmd: cmd, logPath: logPath, start: start, exited: make(chan struct{})}
	stop := make(chan struct{})
	sampled := make(chan usage, 1)
	go func() { sampled <- sampleTree(append([]int{cmd.Process.Pid}, with...), len(with) > 0, stop) }()
	go func() {
		defer close(c.exited)
		if pipe != nil {
			sc := bufio.NewScanner(pipe)
			sc.Buffer(make([]byte, 1<<20), 1<<26)
			for sc.Scan() {
				stdout(sc.Bytes())
			}
			// Drain whatever a too-long line left, so the child never blocks.
			io.Copy(io.Discard, pipe)
		}
		err := cmd.Wait()
		end := time.Now()
		close(stop)
		logFile.Close()
		c.cost = <-sampled
		c.cost.start, c.cost.end = start, end
		c.cost.machineBusy, c.cost.machineSteal = cpu0.shares(readMachineCPU())
		if rs, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			// wait4's rusage covers every descendant the child waited for.
			// Its Maxrss is no measure of the child: Go starts a child with
			// vfork, and Linux folds the suite's own peak RSS into the
			// child's at exec (TestPeakRSSIsTheChilds).
			c.cost.cpuSeconds = max(c.cost.cpuSeconds, tvSeconds(rs.Utime)+tvSeconds(rs.Stime))
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%s exited with %v; last lines of %s:\n%s", filepath.Base(cmd.Path), exit, logPath, tailLines(logPath, 15))
		}
		c.err = err
	}()
	return c, nil
}

// wait waits for the child to exit, or for ctx to end, which stops it, and
// returns what it cost and how it exited.
func (c *child) wait(ctx context.Context) (usage, error) {
	select {
	case <-c.exited:
		return c.cost, c.err
	case <-ctx.Done():
		c.stop()
		return c.cost, fmt.Errorf("%w: stopped %s (see %s)", ctx.Err(), filepath.Base(c.cmd.Path), c.logPath)
	}
}

// stop asks the child's process group to terminate, kills it after 15s, and
// waits until the child exited.
func (c *child) stop() {
	pgid := c.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-c.exited
	}
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// sampleTree samples the trees rooted at roots until stop closes. Peak RSS
// is the highest sum of VmRSS over the trees at one sample; with a single
// root (running only while it is sampled), raised to the largest VmHWM of
// any single process, which catches a peak between samples. CPU is the sum
// over every process ever seen of its last utime+stime, less, for the
// processes of roots[1:]'s trees (running before), what the first sample
// found.
func sampleTree(roots []int, shared bool, stop <-chan struct{}) usage {
	var u usage
	cpuTicks, base := make(map[int]int64), make(map[int]int64)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for first := true; ; first = false {
		var rss int64
		for i, root := range roots {
			for _, pid := range descendants(root) {
				cur, hwm := memStatus(pid)
				rss += cur
				if !shared {
					u.peakRSS = max(u.peakRSS, hwm)
				}
				t, ok := cpuOf(pid)
				if !ok {
					continue
				}
				cpuTicks[pid] = t
				if first && i > 0 {
					base[pid] = t
				}
			}
		}
		u.peakRSS = max(u.peakRSS, rss)
		select {
		case <-stop:
			var ticks int64
			for pid, t := range cpuTicks {
				ticks += t - base[pid]
			}
			u.cpuSeconds = float64(ticks) / clockTicks
			return u
		case <-tick.C:
		}
	}
}

// descendants returns root and every process below it.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	children := make(map[int][]int)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	tree := []int{root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// statFields returns the fields of /proc/PID/stat after the command name.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func parentOf(pid int) (int, bool) {
	f := statFields(pid)
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// cpuOf returns utime+stime in clock ticks (fields 14 and 15 of stat).
func cpuOf(pid int) (int64, bool) {
	f := statFields(pid)
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	return ut + st, err1 == nil && err2 == nil
}

// memStatus returns VmRSS and VmHWM in bytes.
func memStatus(pid int) (rss, hwm int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// tailLines returns the last n lines of a file, for error messages.
func tailLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return "  " + strings.Join(lines[max(0, len(lines)-n):], "\n  ")
}

// machineCPU is the machine's CPU time so far, in clock ticks, from the first
// line of /proc/stat: all of it, the idle part (idle and iowait), and the
// part the hypervisor ran other guests on (steal).
type machineCPU struct{ total, idle, steal int64 }

// readMachineCPU reads /proc/stat; the zero machineCPU if it cannot.
func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return parseMachineCPU(string(line))
}

// parseMachineCPU parses /proc/stat's "cpu user nice system idle iowait irq
// softirq steal ..." line.
func parseMachineCPU(line string) machineCPU {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return machineCPU{}
		}
		v[i] = n
	}
	var m machineCPU
	for _, n := range v {
		m.total += n
	}
	m.idle, m.steal = v[3]+v[4], v[7]
	return m
}

// shares returns the parts, in percent, of the machine's CPU time between m
// and later that its processes used (busy) and that the hypervisor took
// (steal); nil if /proc/stat could not be read.
func (m machineCPU) shares(later machineCPU) (busy, steal *float64) {
	total := later.total - m.total
	if m.total == 0 || later.total == 0 || total <= 0 {
		return nil, nil
	}
	idle, stolen := later.idle-m.idle, later.steal-m.steal
	return ptr(100 * float64(total-idle-stolen) / float64(total)), ptr(100 * float64(stolen) / float64(total))
}
