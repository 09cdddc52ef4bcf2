package clustertest_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster/clustertest"
)

// listenEcho serves an echo on addr until the test ends.
func listenEcho(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// dialFrom connects from's IP to to's address, as a worker does.
func dialFrom(from, to *clustertest.Worker, timeout time.Duration) (net.Conn, error) {
	ip, _, _ := net.SplitHostPort(from.Addr)
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.Dial("tcp", to.Addr)
}

// echo sends a line on c and reads it back.
func echo(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if !bytes.Equal(b, []byte("ping\n")) {
		return fmt.Errorf("echo %q", b)
	}
	return nil
}

// rules returns the iptables rules of the filter and nat OUTPUT chains
// that carry a tag of this process.
func rules(t *testing.T) []string {
	t.Helper()
	var tagged []string
	for _, table := range []string{"filter", "nat"} {
		out, err := exec.Command("iptables", "-t", table, "-S", "OUTPUT").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables -t %s -S OUTPUT: %v: %s", table, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, fmt.Sprintf("%s-%d-", clustertest.RuleTag, os.Getpid())) {
				tagged = append(tagged, l)
			}
		}
	}
	return tagged
}

// TestFaults: the network faults cut and delay exactly the traffic
// between two workers' addresses (tried on listeners of their own, the
// workers are not started), Heal removes every rule they added, and a new
// Faults removes the rules a killed test binary left and keeps those of a
// running one.
func TestFaults(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t, 3)
	a, b, o := c.Workers[0], c.Workers[1], c.Workers[2]
	for _, w := range c.Workers {
		listenEcho(t, w.Addr)
	}

	// A stale rule (its process is gone) and a live one (this process).
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s-%d-1", clustertest.RuleTag, gone.Process.Pid)
	live := fmt.Sprintf("%s-%d-0", clustertest.RuleTag, os.Getpid())
	for _, tag := range []string{stale, live} {
		if out, err := exec.Command("iptables", "-I", "OUTPUT", "-s", "127.0.1.250", "-m", "comment", "--comment", tag, "-j", "DROP").CombinedOutput(); err != nil {
			t.Fatalf("iptables: %v: %s", err, out)
		}
	}
	f := c.Faults(t)
	if got := rules(t); len(got) != 1 || !strings.Contains(got[0], "--comment "+live+" ") {
		t.Errorf("after Faults, the tagged rules are %q; want only the live one", got)
	}
	if out, err := exec.Command("iptables", "-D", "OUTPUT", "-s", "127.0.1.250", "-m", "comment", "--comment", live, "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	if out, err := exec.Command("iptables", "-S", "OUTPUT").Output(); err == nil && strings.Contains(string(out), stale) {
		t.Errorf("the stale rule %s is still there", stale)
	}

	reach := func(from, to *clustertest.Worker) error {
		cn, err := dialFrom(from, to, 300*time.Millisecond)
		if err != nil {
			return err
		}
		defer cn.Close()
		return echo(cn)
	}
	f.Cut(t, a, b)
	for _, p := range [][2]*clustertest.Worker{{a, b}, {b, a}} {
		if err := reach(p[0], p[1]); err == nil {
			t.Errorf("%s reaches %s through a cut", p[0].Name, p[1].Name)
		}
	}
	for _, p := range [][2]*clustertest.Worker{{a, o}, {o, b}} {
		if err := reach(p[0], p[1]); err != nil {
			t.Errorf("%s does not reach %s, which the cut between %s and %s is not about: %v", p[0].Name, p[1].Name, a.Name, b.Name, err)
		}
	}
	f.Heal(t)
	if err := reach(a, b); err != nil {
		t.Errorf("after Heal, %s does not reach %s: %v", a.Name, b.Name, err)
	}

	// A delay resets the connection open before it and delays the next.
	before, err := dialFrom(a, b, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	const d = 150 * time.Millisecond
	f.Delay(t, a, b, d)
	if err := echo(before); err == nil {
		t.Error("a connection open before the delay still works; want it reset")
	}
	start := time.Now()
	if err := reach(a, b); err != nil {
		t.Errorf("through the delay: %v", err)
	}
	if rt := time.Since(start); rt < 2*d {
		t.Errorf("a round trip through a delay of %v took %v", d, rt)
	}
	if len(rules(t)) == 0 {
		t.Error("no tagged rule while faults are in place")
	}
	during, err := dialFrom(a, b, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer during.Close()
	if err := echo(during); err != nil {
		t.Fatalf("through the delay: %v", err)
	}
	f.Heal(t)
	if got := rules(t); len(got) > 0 {
		t.Errorf("after Heal, rules remain: %q", got)
	}
	// Its proxy gone, a connection made through the delay ends at once
	// rather than hang.
	_ = during.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := during.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a connection made through the delay, read after Heal: %v; want it closed", err)
	}
	if err := reach(a, b); err != nil {
		t.Errorf("after Heal, %s does not reach %s: %v", a.Name, b.Name, err)
	}
}
