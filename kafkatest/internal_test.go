package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBackendFromEnv(t *testing.T) {
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("Cannot connect to the Docker daemon") }
	for _, tc := range []struct {
		env    string
		docker func(context.Context) error
		want   backendKind
		err    error
	}{
		{"", up, backendDocker, nil},
		{"", down, backendProcess, nil},
		{"auto", up, backendDocker, nil},
		{" AUTO ", down, backendProcess, nil},
		{"docker", down, backendDocker, nil}, // forced: the start fails and says why
		{"process", up, backendProcess, nil},
		{" Process ", up, backendProcess, nil},
		{"external", up, backendExternal, nil},
		{"podman", up, "", ErrBackend},
	} {
		t.Setenv(BackendEnv, tc.env)
		var logged []string
		logf := func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }
		got, err := backendFromEnv(context.Background(), tc.docker, logf)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%s=%q: got %q, %v; want %q, %v", BackendEnv, tc.env, got, err, tc.want, tc.err)
		}
		if err != nil && !strings.Contains(err.Error(), "use auto, docker, process or external") {
			t.Errorf("%s=%q: error %q does not list the valid values", BackendEnv, tc.env, err)
		}
		if strings.TrimSpace(tc.env) == "" || strings.EqualFold(strings.TrimSpace(tc.env), "auto") {
			if len(logged) != 1 || !strings.Contains(logged[0], "using") {
				t.Errorf("%s=%q: logged %q, want one line saying which backend and why", BackendEnv, tc.env, logged)
			}
		}
	}
}

// TestAutoProbeHonoursDeadline checks that auto does not hang on a Docker
// engine that never answers.
func TestAutoProbeHonoursDeadline(t *testing.T) {
	t.Setenv(BackendEnv, "auto")
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	start := time.Now()
	got, err := backendFromEnv(context.Background(), hang, t.Logf)
	if got != backendProcess || err != nil {
		t.Fatalf("got %q, %v; want process", got, err)
	}
	if d := time.Since(start); d > 2*dockerProbeTimeout {
		t.Errorf("probe took %v, want about %v", d, dockerProbeTimeout)
	}
}

func TestExternalNeedsBrokers(t *testing.T) {
	startUnderTestDir(t)
	t.Setenv(BackendEnv, "external")
	t.Setenv(BrokersEnv, " , ")
	_, err := StartCluster(context.Background())
	if !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), BrokersEnv) {
		t.Fatalf("StartCluster: %v, want ErrBackend naming %s", err, BrokersEnv)
	}
}

func TestExternalUnreachable(t *testing.T) {
	ports, err := freePorts(1) // closed again: nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	startUnderTestDir(t)
	t.Setenv(BackendEnv, "external")
	t.Setenv(BrokersEnv, "127.0.0.1:"+strconv.Itoa(ports[0]))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := StartCluster(ctx, Brokers(1)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("StartCluster: %v, want ErrNotReady", err)
	}
}

func TestServerProperties(t *testing.T) {
	b := &broker{id: 2, port: 9092, ctrlPort: 9093, dir: "/tmp/b2"}
	props := serverProperties(b, "1@127.0.0.1:1,2@127.0.0.1:9093", 2)
	for _, want := range []string{
		"process.roles=broker,controller\n",
		"node.id=2\n",
		"controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:9093\n",
		"listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n",
		"advertised.listeners=PLAINTEXT://127.0.0.1:9092\n",
		"offsets.topic.replication.factor=2\n",
		"transaction.state.log.replication.factor=2\n",
		"auto.create.topics.enable=false\n",
		"log.dirs=/tmp/b2/data\n",
	} {
		if !strings.Contains(props, want) {
			t.Errorf("server.properties lacks %q:\n%s", want, props)
		}
	}
	if p := serverProperties(b, "", 5); !strings.Contains(p, "offsets.topic.replication.factor=3\n") {
		t.Errorf("5 brokers: offsets.topic.replication.factor is not capped at 3:\n%s", p)
	}
}

func TestNewClusterID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id, err := newClusterID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 22 || id[0] == '-' || seen[id] {
			t.Fatalf("bad or repeated cluster id %q", id)
		}
		seen[id] = true
	}
}

func TestUniqueTopic(t *testing.T) {
	t.Run("sub/test name", func(t *testing.T) {
		a, b := UniqueTopic(t, "p#x"), UniqueTopic(t, "p#x")
		if a == b {
			t.Fatalf("UniqueTopic returned %q twice", a)
		}
		if !strings.HasPrefix(a, "p-x-TestUniqueTopic-sub-test_name-") {
			t.Errorf("UniqueTopic = %q, want the sanitized prefix and test name first", a)
		}
		if long := UniqueTopic(t, strings.Repeat("x", 300)); len(long) != 249 {
			t.Errorf("len(UniqueTopic(300 x)) = %d, want 249", len(long))
		}
	})
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"line1\nline2\nline3\n", 8, "line3\n"},
		{"abcdefghij", 4, "ghij"},
	} {
		if got := string(tail([]byte(tc.in), tc.n)); got != tc.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestCacheRoot(t *testing.T) {
	t.Setenv(cacheEnv, "/a")
	t.Setenv("XDG_CACHE_HOME", "/b")
	if got, _ := cacheRoot(); got != "/a" {
		t.Errorf("with %s: %q", cacheEnv, got)
	}
	t.Setenv(cacheEnv, "")
	if got, _ := cacheRoot(); got != "/b/gostream" {
		t.Errorf("with XDG_CACHE_HOME: %q", got)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/c")
	if got, _ := cacheRoot(); got != "/c/.cache/gostream" {
		t.Errorf("with HOME: %q", got)
	}
}

// startUnderTestDir makes StartCluster create its directory under the
// test's temporary directory: a failed start keeps its directory for the
// broker logs its error names, and there it goes with the test's.
func startUnderTestDir(t *testing.T) {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir())
}

// fakeJava installs a JAVA_HOME whose bin/java succeeds for Kafka tools and,
// for the broker, prints brokerOutput and its arguments and exits 1. It also marks the jar
// cache as resolved, so no Maven runs.
func fakeJava(t *testing.T, brokerOutput string) {
	t.Helper()
	startUnderTestDir(t)
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nfor a; do if [ \"$a\" = " + brokerMain + " ]; then echo \"$FAKE_BROKER_OUTPUT (flags: $*)\" >&2; exit 1; fi; done\nexit 0\n"
	if err := os.WriteFile(filepath.Join(home, "bin", "java"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JAVA_HOME", home)
	t.Setenv("FAKE_BROKER_OUTPUT", brokerOutput)
	cache := t.TempDir()
	libs := filepath.Join(cache, cacheSubdir, "libs")
	if err := os.MkdirAll(libs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(libs, readyMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(cacheEnv, cache)
	t.Setenv(BackendEnv, "process")
}

func TestBrokerExitsEarly(t *testing.T) {
	fakeJava(t, "FATAL boom: bad config")
	var logs []string
	var mu sync.Mutex
	logf := Logf(func(f string, a ...any) { mu.Lock(); logs = append(logs, f); mu.Unlock() })
	start := time.Now()
	_, err := StartCluster(context.Background(), Brokers(2), logf)
	if !errors.Is(err, ErrBrokerExited) || !strings.Contains(err.Error(), "FATAL boom: bad config") {
		t.Fatalf("StartCluster: %v, want ErrBrokerExited with the broker's output", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("an early exit was reported after %v, want at once", d)
	}
	for _, l := range logs {
		if strings.Contains(l, "retrying") {
			t.Errorf("retried although no port was taken")
		}
	}
}

// TestBrokerJVM checks that brokers run with the JVM flags of BrokerJVM,
// and with TestJVM's without it.
func TestBrokerJVM(t *testing.T) {
	fakeJava(t, "FATAL stop here")
	for _, tc := range []struct {
		opts      []Option
		want, not string
	}{
		{nil, "-XX:+UseSerialGC -XX:TieredStopAtLevel=1", "UseG1GC"},
		{[]Option{BrokerJVM(ServerJVM...)}, "-Xmx1G -Xms1G -server -XX:+UseG1GC", "TieredStopAtLevel"},
	} {
		_, err := StartCluster(context.Background(), append(tc.opts, Brokers(1))...)
		if !errors.Is(err, ErrBrokerExited) {
			t.Fatalf("StartCluster: %v, want ErrBrokerExited", err)
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, tc.not) {
			t.Errorf("broker ran with %q; want flags %q and no %q", msg, tc.want, tc.not)
		}
	}
}

func TestPortTakenRetriesOnce(t *testing.T) {
	fakeJava(t, "java.net.BindException: Address already in use")
	var retries int
	var mu sync.Mutex
	logf := Logf(func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(f, "retrying with new ports") {
			retries++
		}
	})
	_, err := StartCluster(context.Background(), Brokers(1), logf)
	if !errors.Is(err, ErrBrokerExited) || !errors.Is(err, errPortTaken) {
		t.Fatalf("StartCluster: %v, want ErrBrokerExited and errPortTaken", err)
	}
	if retries != 1 {
		t.Errorf("retried %d times, want 1", retries)
	}
}

func TestJavaHomeWithoutJava(t *testing.T) {
	t.Setenv("JAVA_HOME", t.TempDir())
	if _, err := javaPath(); !errors.Is(err, ErrJava) || !strings.Contains(err.Error(), "JAVA_HOME") {
		t.Fatalf("javaPath: %v, want ErrJava naming JAVA_HOME", err)
	}
}

// TestJarsDirConcurrent resolves into an empty cache from two goroutines at
// once: the flock must make them share one Maven run.
func TestJarsDirConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Maven against Maven Central; skipped with -short")
	}
	t.Setenv(cacheEnv, t.TempDir())
	var mu sync.Mutex
	resolving := 0
	logf := func(f string, a ...any) {
		if strings.Contains(f, "resolving") {
			mu.Lock()
			resolving++
			mu.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dirs := make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = JarsDir(ctx, logf) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if dirs[0] != dirs[1] || resolving != 1 {
		t.Fatalf("dirs %q, %d Maven runs; want one dir and one run", dirs, resolving)
	}
	for _, jar := range []string{"kafka_2.13-3.9.1.jar", "kafka-clients-3.9.1.jar", "slf4j-reload4j-1.7.36.jar", "reload4j-1.2.25.jar"} {
		if !fileExists(filepath.Join(dirs[0], jar)) {
			t.Errorf("%s missing from %s", jar, dirs[0])
		}
	}
}
