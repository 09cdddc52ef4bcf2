package kafkatest

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// KafkaVersion is the Apache Kafka version the process backend runs.
const KafkaVersion = "3.9.1"

//go:embed maven/pom.xml
var pomXML []byte

const (
	readyMarker   = ".resolved"
	mavenPlugin   = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies"
	logTailBytes  = 4 << 10
	cacheEnv      = "GOSTREAM_CACHE"
	cacheSubdir   = "kafka-" + KafkaVersion
	mavenLogName  = "maven.log"
	cacheLockName = "resolve.lock"
)

// cacheRoot returns $GOSTREAM_CACHE, else $XDG_CACHE_HOME/gostream, else
// ~/.cache/gostream.
func cacheRoot() (string, error) {
	if d := os.Getenv(cacheEnv); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "gostream"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%w: no cache directory (set %s): %v", ErrResolve, cacheEnv, err)
	}
	return filepath.Join(home, ".cache", "gostream"), nil
}

// JarsDir returns the directory holding the Kafka 3.9.1 jars (plus an slf4j
// backend), resolving them with Maven from Maven Central on first use.
//
// The cache is $GOSTREAM_CACHE, else $XDG_CACHE_HOME/gostream, else
// ~/.cache/gostream; the jars go to kafka-3.9.1/libs under it. A marker file
// written last makes a half-resolved directory be resolved again. An flock
// on kafka-3.9.1/resolve.lock serializes resolution across processes, so
// test binaries running in parallel share one download. logf receives
// progress lines and may be nil. Maven output goes to kafka-3.9.1/maven.log;
// its tail is included in the error if resolution fails.
func JarsDir(ctx context.Context, logf func(string, ...any)) (string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	root, err := cacheRoot()
	if err != nil {
		return "", err
	}
	base := filepath.Join(root, cacheSubdir)
	libs := filepath.Join(base, "libs")
	if fileExists(filepath.Join(libs, readyMarker)) {
		return libs, nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("%w: create cache dir (set %s to a writable dir): %v", ErrResolve, cacheEnv, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(base, cacheLockName))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another process may have finished while we waited for the lock.
	if fileExists(filepath.Join(libs, readyMarker)) {
		return libs, nil
	}
	logf("kafkatest: resolving Kafka %s jars with Maven into %s ...", KafkaVersion, libs)
	start := time.Now()
	if err := resolve(ctx, base, libs); err != nil {
		return "", err
	}
	logf("kafkatest: Kafka jars resolved in %v", time.Since(start).Round(time.Millisecond))
	return libs, nil
}

func resolve(ctx context.Context, base, libs string) error {
	if err := os.RemoveAll(libs); err != nil {
		return fmt.Errorf("%w: clear half-resolved %s: %v", ErrResolve, libs, err)
	}
	pom := filepath.Join(base, "pom.xml")
	if err := os.WriteFile(pom, pomXML, 0o644); err != nil {
		return fmt.Errorf("%w: write %s: %v", ErrResolve, pom, err)
	}
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		return fmt.Errorf("%w: mvn not on PATH (is Maven installed? install it, or put the jars in %s and create %s there): %v",
			ErrResolve, libs, readyMarker, err)
	}
	logPath := filepath.Join(base, mavenLogName)
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("%w: create %s: %v", ErrResolve, logPath, err)
	}
	defer logFile.Close()
	cmd := toolCommand(ctx, mvn, "-B", "-q", "-f", pom, mavenPlugin,
		"-DoutputDirectory="+libs, "-DincludeScope=runtime")
	cmd.Dir = base
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s failed: %v (is Maven installed? is Maven Central reachable?); tail of %s:\n%s",
			ErrResolve, cmd, err, logPath, tailFile(logPath))
	}
	if err := os.WriteFile(filepath.Join(libs, readyMarker), []byte(KafkaVersion+"\n"), 0o644); err != nil {
		return fmt.Errorf("%w: write marker in %s: %v", ErrResolve, libs, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel
// the wait. The returned func releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: open lock %s: %v", ErrResolve, path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("%w: flock %s: %v", ErrResolve, path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%w: waiting for another process resolving jars (lock %s): %v", ErrResolve, path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// tailFile returns about the last logTailBytes of a file, or a note saying
// why it could not be read.
func tailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return string(tail(b, logTailBytes))
}

// tail returns the last n bytes of b, starting at a line boundary when one
// is near.
func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
		b = b[i+1:]
	}
	return b
}
