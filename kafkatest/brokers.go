package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gostream/gostream/internal/freeport"
	"golang.org/x/sync/errgroup"
)

const (
	// startTimeout bounds the wait for all brokers to register.
	startTimeout = 180 * time.Second
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

// broker is one combined broker and controller of a local cluster, on either
// the process or the docker backend. Its files live under dir, at the same
// path for the JVM whichever backend runs it.
type broker struct {
	id       int
	port     int // PLAINTEXT listener
	ctrlPort int // CONTROLLER listener
	dir      string
	jvm      []string // JVM flags
}

func (b *broker) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// serverLogTail describes b's server.log with its tail, for exit errors.
func (b *broker) serverLogTail() string {
	p := filepath.Join(b.dir, "logs", "server.log")
	return fmt.Sprintf("tail of %s:\n%s", p, tailFile(p))
}

// launcher runs the JVMs of one attempt at starting a local cluster: Kafka
// tools to completion, brokers until stop. The process and docker backends
// implement it. startBroker, kill, exited and stop are never called
// concurrently with each other (brokerSet serializes them); runTool may be
// called concurrently with them and with itself.
type launcher interface {
	// runTool is backend.runTool.
	runTool(ctx context.Context, main string, stdin io.Reader, args ...string) ([]byte, error)
	// startBroker starts b, whose files are written, without waiting for
	// it to be ready; b may have run before and been killed. ctx bounds the
	// start only.
	startBroker(ctx context.Context, b *broker) error
	// kill kills b's JVM with SIGKILL and waits until it is gone; b's files
	// stay.
	kill(b *broker) error
	// exited returns an error wrapping ErrBrokerExited, with the tail of
	// b's logs, once b has stopped; nil while it runs.
	exited(b *broker) error
	// stop stops every broker started, waits for them and releases what the
	// launcher holds. Called once.
	stop() error
}

// brokerSet is the backend of a local cluster: brokers started through a
// launcher. After the start, mu serializes the launcher's broker calls
// (KillBroker, RestartBroker and Close may come from any goroutine).
type brokerSet struct {
	launcher
	brokers []*broker
	logf    func(string, ...any)

	mu struct {
		sync.Mutex
		stopped bool
		killed  map[int]bool // by broker id
	}
}

func (s *brokerSet) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.stopped = true
	return s.launcher.stop()
}

// broker returns the broker with node id id.
func (s *brokerSet) broker(id int) (*broker, error) {
	if id < 1 || id > len(s.brokers) {
		return nil, fmt.Errorf("%w: no broker %d (the brokers are 1 to %d)", ErrBackend, id, len(s.brokers))
	}
	return s.brokers[id-1], nil
}

// killBroker is brokerControl.killBroker.
func (s *brokerSet) killBroker(id int) error {
	b, err := s.broker(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.mu.stopped:
		return ErrClosed
	case s.mu.killed[id]:
		return fmt.Errorf("%w: broker %d is already killed (RestartBroker starts it again)", ErrBackend, id)
	}
	if err := s.kill(b); err != nil {
		return err
	}
	s.mu.killed[id] = true
	s.logf("kafkatest: killed broker %d (%s)", id, b.addr())
	return nil
}

// restartBroker is brokerControl.restartBroker.
func (s *brokerSet) restartBroker(ctx context.Context, id int) error {
	b, err := s.broker(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case s.mu.stopped:
		err = ErrClosed
	case !s.mu.killed[id]:
		err = fmt.Errorf("%w: broker %d is running (KillBroker it first)", ErrBackend, id)
	default:
		err = s.startBroker(ctx, b)
	}
	if err == nil {
		delete(s.mu.killed, id)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	exited := func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.mu.stopped {
			return ErrClosed
		}
		return s.exited(b)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := waitBrokers(ctx, s.addrs(), len(s.brokers), exited, func(string, ...any) {}); err != nil {
		return fmt.Errorf("%w (its logs are under %s)", err, b.dir)
	}
	s.logf("kafkatest: restarted broker %d (%s)", id, b.addr())
	return nil
}

func (s *brokerSet) addrs() []string {
	out := make([]string, len(s.brokers))
	for i, b := range s.brokers {
		out[i] = b.addr()
	}
	return out
}

func (s *brokerSet) persistent() bool { return false }

// startBrokers starts cfg.brokers brokers with their files under dir, each
// attempt through a launcher from newLauncher (given the attempt's dir), and
// waits until all brokers are registered. A port taken between choosing and
// binding it makes the whole start be retried once with fresh ports.
func startBrokers(ctx context.Context, cfg config, dir string, newLauncher func(dir string) (launcher, error)) (*brokerSet, error) {
	for attempt := 1; ; attempt++ {
		attemptDir := filepath.Join(dir, fmt.Sprintf("run%d", attempt))
		if err := os.MkdirAll(attemptDir, 0o755); err != nil {
			return nil, fmt.Errorf("kafkatest: create %s: %w", attemptDir, err)
		}
		l, err := newLauncher(attemptDir)
		if err != nil {
			return nil, err
		}
		s := &brokerSet{launcher: l, logf: cfg.logf}
		s.mu.killed = map[int]bool{}
		err = startBrokersOnce(ctx, cfg, s, attemptDir)
		if err == nil {
			return s, nil
		}
		if stopErr := l.stop(); stopErr != nil {
			cfg.logf("kafkatest: stopping a failed start: %v", stopErr)
		}
		if attempt == 1 && errors.Is(err, errPortTaken) {
			_ = os.RemoveAll(attemptDir)
			cfg.logf("kafkatest: a port was taken while starting (%v); retrying with new ports", err)
			continue
		}
		return nil, err // attemptDir stays: the error points at its broker logs
	}
}

// startBrokersOnce makes one attempt, filling s.brokers. On error the
// caller stops s.
func startBrokersOnce(ctx context.Context, cfg config, s *brokerSet, dir string) error {
	n := cfg.brokers
	ports, err := freePorts(2 * n)
	if err != nil {
		return err
	}
	for i := range n {
		s.brokers = append(s.brokers, &broker{
			id:       i + 1,
			port:     ports[2*i],
			ctrlPort: ports[2*i+1],
			dir:      filepath.Join(dir, fmt.Sprintf("broker%d", i+1)),
			jvm:      cfg.brokerJVM,
		})
	}
	if err := writeFiles(s.brokers); err != nil {
		return err
	}
	clusterID, err := newClusterID()
	if err != nil {
		return err
	}
	cfg.logf("kafkatest: formatting storage of %d brokers (cluster id %s) in %s", n, clusterID, dir)
	if err := formatStorage(ctx, s, clusterID); err != nil {
		return err
	}
	for _, b := range s.brokers {
		if err := s.startBroker(ctx, b); err != nil {
			return err
		}
	}
	cfg.logf("kafkatest: started %d brokers, waiting for them to register", n)
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	exited := func() error {
		for _, b := range s.brokers {
			if err := s.exited(b); err != nil {
				if strings.Contains(err.Error(), "Address already in use") {
					return fmt.Errorf("%w: %w", errPortTaken, err)
				}
				return err
			}
		}
		return nil
	}
	if err := waitBrokers(ctx, s.addrs(), n, exited, cfg.logf); err != nil {
		return fmt.Errorf("%w (broker logs are under %s)", err, dir)
	}
	return nil
}

// writeFiles writes every broker's server.properties and log4j.properties.
func writeFiles(brokers []*broker) error {
	voters := make([]string, len(brokers))
	for i, b := range brokers {
		voters[i] = fmt.Sprintf("%d@127.0.0.1:%d", b.id, b.ctrlPort)
	}
	for _, b := range brokers {
		if err := os.MkdirAll(filepath.Join(b.dir, "logs"), 0o755); err != nil {
			return fmt.Errorf("kafkatest: create broker dir: %w", err)
		}
		props := serverProperties(b, strings.Join(voters, ","), len(brokers))
		if err := os.WriteFile(filepath.Join(b.dir, "server.properties"), []byte(props), 0o644); err != nil {
			return fmt.Errorf("kafkatest: write server.properties: %w", err)
		}
		if err := os.WriteFile(filepath.Join(b.dir, "log4j.properties"), []byte(brokerLog4j), 0o644); err != nil {
			return fmt.Errorf("kafkatest: write log4j.properties: %w", err)
		}
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
func formatStorage(ctx context.Context, s *brokerSet, clusterID string) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, b := range s.brokers {
		g.Go(func() error {
			out, err := s.runTool(ctx, storageToolMain,
				nil, "format", "-t", clusterID, "-c", filepath.Join(b.dir, "server.properties"))
			switch {
			case errors.Is(err, ErrDocker), errors.Is(err, ErrJava), errors.Is(err, ErrResolve):
				return fmt.Errorf("kafkatest: format storage of broker %d: %w", b.id, err)
			case err != nil:
				return fmt.Errorf("%w: %s format for broker %d: %w; output:\n%s",
					ErrBrokerExited, storageToolMain, b.id, err, tail(out, logTailBytes))
			}
			return nil
		})
	}
	return g.Wait()
}

// freePorts returns n distinct free TCP ports on 127.0.0.1, below the
// kernel's ephemeral range (freeport), where no other socket is given them
// while the brokers start. All listeners are held open until every port is
// chosen so no port is returned twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := freeport.Listen("127.0.0.1")
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
