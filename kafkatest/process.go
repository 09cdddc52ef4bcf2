package kafkatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

const (
	// startTimeout bounds the wait for all brokers to register.
	startTimeout = 90 * time.Second
	// stopTimeout is how long Close waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// brokerMain and storageToolMain are the Kafka entry points we run.
	brokerMain      = "kafka.Kafka"
	storageToolMain = "kafka.tools.StorageTool"
)

// brokerLog4j sends Kafka's own logging, at WARN, to a file under
// kafka.logs.dir; the KRaft server start/stop lines are kept at INFO.
const brokerLog4j = `log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
`

// toolLog4j sends a tool's logging, at WARN, to stderr, which we capture.
const toolLog4j = `log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
`

// processBackend runs each broker as a local JVM (combined broker and
// controller).
type processBackend struct {
	brokers []*broker
}

type broker struct {
	id       int
	port     int // PLAINTEXT listener
	ctrlPort int // CONTROLLER listener
	dir      string
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd.Wait returned; then waitErr is set
	waitErr  error
}

func (b *broker) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

func (b *broker) hasExited() bool {
	select {
	case <-b.exited:
		return true
	default:
		return false
	}
}

// exitError describes an exited broker with the tail of its logs.
func (b *broker) exitError() error {
	return fmt.Errorf("%w: broker %d exited early (%v); tail of %s:\n%s\ntail of %s:\n%s",
		ErrBrokerExited, b.id, b.waitErr,
		filepath.Join(b.dir, "logs", "server.log"), tailFile(filepath.Join(b.dir, "logs", "server.log")),
		filepath.Join(b.dir, "console.log"), tailFile(filepath.Join(b.dir, "console.log")))
}

// startProcess starts cfg.brokers brokers with their files under dir and
// waits until all of them are registered. A port taken between choosing and
// binding it makes the whole start be retried once with fresh ports.
func startProcess(ctx context.Context, cfg config, dir string) (*processBackend, error) {
	java, err := javaPath()
	if err != nil {
		return nil, err
	}
	libs, err := JarsDir(ctx, cfg.logf)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		attemptDir := filepath.Join(dir, fmt.Sprintf("run%d", attempt))
		pb, err := startProcessOnce(ctx, cfg, java, libs, attemptDir)
		if err == nil {
			return pb, nil
		}
		if pb != nil {
			pb.stop()
		}
		_ = os.RemoveAll(attemptDir)
		if attempt == 1 && errors.Is(err, errPortTaken) {
			cfg.logf("kafkatest: a port was taken while starting (%v); retrying with new ports", err)
			continue
		}
		return nil, err
	}
}

// startProcessOnce makes one attempt. On error the returned backend, if not
// nil, holds processes the caller must stop.
func startProcessOnce(ctx context.Context, cfg config, java, libs, dir string) (*processBackend, error) {
	n := cfg.brokers
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	pb := &processBackend{}
	for i := range n {
		pb.brokers = append(pb.brokers, &broker{
			id:       i + 1,
			port:     ports[2*i],
			ctrlPort: ports[2*i+1],
			dir:      filepath.Join(dir, fmt.Sprintf("broker%d", i+1)),
		})
	}
	toolConf := filepath.Join(dir, "tools-log4j.properties")
	if err := writeFiles(pb, toolConf); err != nil {
		return nil, err
	}

	clusterID, err := newClusterID()
	if err != nil {
		return nil, err
	}
	cfg.logf("kafkatest: formatting storage of %d brokers (cluster id %s) in %s", n, clusterID, dir)
	if err := formatStorage(ctx, java, libs, toolConf, clusterID, pb.brokers); err != nil {
		return nil, err
	}

	for _, b := range pb.brokers {
		if err := startBroker(java, libs, b); err != nil {
			return pb, err
		}
	}
	cfg.logf("kafkatest: started %d broker JVMs, waiting for them to register", n)
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	seeds := pb.addrs()
	exited := func() error {
		for _, b := range pb.brokers {
			if b.hasExited() {
				err := b.exitError()
				if strings.Contains(err.Error(), "Address already in use") {
					return fmt.Errorf("%w: %w", errPortTaken, err)
				}
				return err
			}
		}
		return nil
	}
	if err := waitBrokers(ctx, seeds, n, exited, cfg.logf); err != nil {
		return pb, fmt.Errorf("%w (broker logs are under %s)", err, dir)
	}
	return pb, nil
}

// writeFiles writes every broker's server.properties and log4j.properties,
// and the tools' log4j.properties.
func writeFiles(pb *processBackend, toolConf string) error {
	voters := make([]string, len(pb.brokers))
	for i, b := range pb.brokers {
		voters[i] = fmt.Sprintf("%d@127.0.0.1:%d", b.id, b.ctrlPort)
	}
	for _, b := range pb.brokers {
		if err := os.MkdirAll(filepath.Join(b.dir, "logs"), 0o755); err != nil {
			return fmt.Errorf("kafkatest: create broker dir: %w", err)
		}
		props := serverProperties(b, strings.Join(voters, ","), len(pb.brokers))
		if err := os.WriteFile(filepath.Join(b.dir, "server.properties"), []byte(props), 0o644); err != nil {
			return fmt.Errorf("kafkatest: write server.properties: %w", err)
		}
		if err := os.WriteFile(filepath.Join(b.dir, "log4j.properties"), []byte(brokerLog4j), 0o644); err != nil {
			return fmt.Errorf("kafkatest: write log4j.properties: %w", err)
		}
	}
	if err := os.WriteFile(toolConf, []byte(toolLog4j), 0o644); err != nil {
		return fmt.Errorf("kafkatest: write %s: %w", toolConf, err)
	}
	return nil
}

// serverProperties is a broker's configuration: combined broker and
// controller, loopback only, replication and thread counts sized for tests
// on a small machine.
func serverProperties(b *broker, voters string, n int) string {
	rf := min(3, n)
	lines := []string{
		"process.roles=broker,controller",
		"node.id=" + strconv.Itoa(b.id),
		"controller.quorum.voters=" + voters,
		fmt.Sprintf("listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", b.port, b.ctrlPort),
		fmt.Sprintf("advertised.listeners=PLAINTEXT://127.0.0.1:%d", b.port),
		"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"controller.listener.names=CONTROLLER",
		"inter.broker.listener.name=PLAINTEXT",
		"log.dirs=" + filepath.Join(b.dir, "data"),
		"num.network.threads=2",
		"num.io.threads=2",
		"background.threads=2",
		"num.recovery.threads.per.data.dir=1",
		"num.replica.fetchers=1",
		"num.partitions=1",
		"default.replication.factor=1",
		"min.insync.replicas=1",
		"auto.create.topics.enable=false",
		"group.initial.rebalance.delay.ms=0",
		"offsets.topic.replication.factor=" + strconv.Itoa(rf),
		"offsets.topic.num.partitions=10",
		"transaction.state.log.replication.factor=" + strconv.Itoa(rf),
		"transaction.state.log.min.isr=1",
		"transaction.state.log.num.partitions=10",
		// The log cleaner (compacted changelog topics) would take 128 MiB of
		// a 512 MiB heap by default.
		"log.cleaner.dedupe.buffer.size=16777216",
	}
	return strings.Join(lines, "\n") + "\n"
}

// formatStorage runs StorageTool format for every broker in parallel.
func formatStorage(ctx context.Context, java, libs, toolConf, clusterID string, brokers []*broker) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, b := range brokers {
		g.Go(func() error {
			cmd := javaCommand(ctx, java, jvmToolFlags, libs, toolConf, filepath.Join(b.dir, "logs"),
				storageToolMain, "format", "-t", clusterID, "-c", filepath.Join(b.dir, "server.properties"))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%w: %s format for broker %d: %v; output:\n%s",
					ErrBrokerExited, storageToolMain, b.id, err, tail(out.Bytes(), logTailBytes))
			}
			return nil
		})
	}
	return g.Wait()
}

// startBroker starts a broker JVM and a goroutine that reaps it; stop waits
// for that goroutine through b.exited.
func startBroker(java, libs string, b *broker) error {
	console, err := os.Create(filepath.Join(b.dir, "console.log"))
	if err != nil {
		return fmt.Errorf("kafkatest: create broker %d console log: %w", b.id, err)
	}
	b.cmd = javaCommand(nil, java, jvmBrokerFlags, libs, filepath.Join(b.dir, "log4j.properties"),
		filepath.Join(b.dir, "logs"), brokerMain, filepath.Join(b.dir, "server.properties"))
	b.cmd.Stdout, b.cmd.Stderr = console, console
	if err := b.cmd.Start(); err != nil {
		console.Close()
		b.cmd = nil
		return fmt.Errorf("%w: start broker %d: %v", ErrBrokerExited, b.id, err)
	}
	b.exited = make(chan struct{})
	go func() {
		b.waitErr = b.cmd.Wait()
		console.Close()
		close(b.exited)
	}()
	return nil
}

func (pb *processBackend) addrs() []string {
	out := make([]string, len(pb.brokers))
	for i, b := range pb.brokers {
		out[i] = b.addr()
	}
	return out
}

func (pb *processBackend) persistent() bool { return false }

// stop sends SIGTERM to every running broker, waits up to stopTimeout for
// all of them, SIGKILLs the rest and waits for them to be reaped.
func (pb *processBackend) stop() error {
	var running []*broker
	for _, b := range pb.brokers {
		if b.cmd != nil {
			running = append(running, b)
			_ = signalGroup(b.cmd, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(stopTimeout)
	var killed []int
	for _, b := range running {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-b.exited:
		case <-t.C:
		}
		t.Stop()
		if !b.hasExited() {
			killed = append(killed, b.id)
			_ = signalGroup(b.cmd, syscall.SIGKILL)
			<-b.exited
		}
	}
	if len(killed) > 0 {
		return fmt.Errorf("kafkatest: brokers %v did not stop within %v of SIGTERM and were killed", killed, stopTimeout)
	}
	return nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. All listeners
// are held open until every port is chosen so no port is returned twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kafkatest: find a free port on 127.0.0.1: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// newClusterID returns a random Kafka cluster id: 16 random bytes, base64
// URL encoded without padding. Like Kafka, it avoids a leading '-', which a
// command line would read as a flag.
func newClusterID() (string, error) {
	for {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("kafkatest: cluster id: %w", err)
		}
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id, nil
		}
	}
}
