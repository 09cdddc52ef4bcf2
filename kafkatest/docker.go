package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// DefaultImage is the image the docker backend runs unless ImageEnv names
// another: the official Apache Kafka image, pulled from Docker Hub when
// missing. Any image with a Java 17+ at /opt/java/openjdk/bin/java and the
// Kafka jars in /opt/kafka/libs works, such as the one scripts/kafka-image.sh
// builds without a registry.
const DefaultImage = "apache/kafka:" + KafkaVersion

const (
	// imageJava and imageLibs are the java binary and the Kafka jars in the
	// image: the paths of apache/kafka, mirrored by scripts/kafka-image.sh.
	imageJava = "/opt/java/openjdk/bin/java"
	imageLibs = "/opt/kafka/libs"
	// labelHost and labelPID name the host and the process that started a
	// container, so that a later process can remove a dead one's leftovers.
	labelHost = "org.gostream.kafkatest.host"
	labelPID  = "org.gostream.kafkatest.pid"
	// dockerHint is the next step after a failed container start.
	dockerHint = "(is the image available? without a registry, run `eval \"$(bash scripts/kafka-image.sh)\"`, " +
		"which builds one locally and sets " + ImageEnv + " and TESTCONTAINERS_RYUK_DISABLED=true; " +
		"or set " + BackendEnv + "=process)"
)

// dockerUp reports why no Docker engine answers, or nil if one does.
func dockerUp(ctx context.Context) error {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	return cli.Close()
}

// dockerLauncher runs brokers and tools as containers of one image, with
// host networking, as the calling user, with the attempt's dir bind-mounted
// at the same path, so that the files and ports are those of the process
// backend.
type dockerLauncher struct {
	image string
	dir   string // bind-mounted
	conf  string // tools' log4j configuration, in dir
	logf  func(string, ...any)
	cli   *testcontainers.DockerClient
	ctrs  map[int]testcontainers.Container // brokers, by id
}

// reapOnce removes, once per process, the containers that dead processes
// on this host left behind.
var reapOnce sync.Once

// startDocker starts a cluster of containers with their files under dir.
func startDocker(ctx context.Context, cfg config, dir string) (*brokerSet, error) {
	image := os.Getenv(ImageEnv)
	if image == "" {
		image = DefaultImage
	}
	cfg.logf("kafkatest: running brokers in containers of %s", image)
	return startBrokers(ctx, cfg, dir, func(dir string) (launcher, error) {
		cli, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: no Docker engine answers: %v (install Docker and start it: "+
				"scripts/kafka-image.sh does both on Debian; or set %s=process)", ErrDocker, err, BackendEnv)
		}
		reapOnce.Do(func() { reapLeftovers(ctx, cli, cfg.logf) })
		conf, err := writeToolLog4j(dir)
		if err != nil {
			cli.Close()
			return nil, err
		}
		return &dockerLauncher{image: image, dir: dir, conf: conf, logf: cfg.logf, cli: cli,
			ctrs: map[int]testcontainers.Container{}}, nil
	})
}

// reapLeftovers removes the containers labelled by a process of this host
// that no longer runs (a test binary killed before its Close).
func reapLeftovers(ctx context.Context, cli *testcontainers.DockerClient, logf func(string, ...any)) {
	host, _ := os.Hostname()
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", labelHost+"="+host),
	})
	if err != nil {
		logf("kafkatest: listing leftover containers: %v", err)
		return
	}
	for _, c := range res.Items {
		pid, err := strconv.Atoi(c.Labels[labelPID])
		if err != nil || processAlive(pid) {
			continue
		}
		_, err = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		logf("kafkatest: removed container %s %v left by dead process %d: %v", c.ID[:12], c.Names, pid, err)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

var containerSeq atomic.Uint64

// request describes a container running class main from the image's jars.
// With stdin, the container keeps its standard input open until the
// attached client closes it.
func (d *dockerLauncher) request(role string, flags []string, log4jConf, logsDir, main string, args []string, stdin bool) testcontainers.GenericContainerRequest {
	host, _ := os.Hostname()
	pid := strconv.Itoa(os.Getpid())
	return testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:      d.image,
			Name:       fmt.Sprintf("kafkatest-%s-%d-%s", pid, containerSeq.Add(1), role),
			Entrypoint: []string{imageJava},
			Cmd:        javaArgs(flags, imageLibs, log4jConf, logsDir, main, args...),
			Labels:     map[string]string{labelHost: host, labelPID: pid},
			ConfigModifier: func(c *container.Config) {
				c.User = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
				c.OpenStdin, c.StdinOnce = stdin, stdin
			},
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.NetworkMode = "host"
				hc.Binds = []string{d.dir + ":" + d.dir}
			},
			// Host networking only: drop the network testcontainers attaches
			// when the engine has no default bridge (dockerd --bridge=none).
			EndpointSettingsModifier: func(m map[string]*network.EndpointSettings) { clear(m) },
		},
		Logger: logger(d.logf),
	}
}

// logger adapts a logf to testcontainers' Logger.
type logger func(string, ...any)

func (l logger) Printf(format string, args ...any) { l("kafkatest: testcontainers: "+format, args...) }

// runTool runs the tool in a container of its own, removed when it exits.
func (d *dockerLauncher) runTool(ctx context.Context, main string, stdin io.Reader, args ...string) (out []byte, err error) {
	ctr, err := testcontainers.GenericContainer(ctx, d.request("tool", jvmToolFlags, d.conf, d.dir, main, args, stdin != nil))
	defer func() {
		if termErr := terminate(ctr); termErr != nil && err == nil {
			err = termErr
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("%w: create a container of %s for %s: %w %s", ErrDocker, d.image, main, err, dockerHint)
	}
	id := ctr.GetContainerID()
	if stdin != nil {
		att, err := d.cli.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdin: true})
		if err != nil {
			return nil, fmt.Errorf("%w: attach to the stdin of container %s: %w", ErrDocker, id[:12], err)
		}
		defer att.Close()
		defer context.AfterFunc(ctx, att.Close)()
		if err := ctr.Start(ctx); err != nil {
			return nil, fmt.Errorf("%w: start container %s: %w %s", ErrDocker, id[:12], err, dockerHint)
		}
		if _, err := io.Copy(att.Conn, stdin); err != nil {
			return nil, fmt.Errorf("%w: write stdin of container %s: %w", ErrDocker, id[:12], err)
		}
		if err := att.CloseWrite(); err != nil {
			return nil, fmt.Errorf("%w: close stdin of container %s: %w", ErrDocker, id[:12], err)
		}
	} else if err := ctr.Start(ctx); err != nil {
		return nil, fmt.Errorf("%w: start container %s: %w %s", ErrDocker, id[:12], err, dockerHint)
	}
	wait := d.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int64
	select {
	case r := <-wait.Result:
		code = r.StatusCode
	case err := <-wait.Error:
		return nil, fmt.Errorf("%w: wait for container %s: %w", ErrDocker, id[:12], err)
	}
	out, err = containerLogs(ctx, ctr)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return out, fmt.Errorf("container %s exited with status %d", id[:12], code)
	}
	return out, nil
}

// containerLogs returns a container's stdout and stderr.
func containerLogs(ctx context.Context, ctr testcontainers.Container) ([]byte, error) {
	rc, err := ctr.Logs(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: logs of container %s: %w", ErrDocker, ctr.GetContainerID()[:12], err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// terminate kills (Close says why) and removes ctr, which may be nil.
func terminate(ctr testcontainers.Container) error {
	if ctr == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ctr.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil {
		return fmt.Errorf("%w: remove container %s (remove it with docker rm -f): %w", ErrDocker, ctr.GetContainerID(), err)
	}
	return nil
}

func (d *dockerLauncher) startBroker(ctx context.Context, b *broker) error {
	req := d.request("broker"+strconv.Itoa(b.id), b.jvm, filepath.Join(b.dir, "log4j.properties"),
		filepath.Join(b.dir, "logs"), brokerMain, []string{filepath.Join(b.dir, "server.properties")}, false)
	req.Started = true
	ctr, err := testcontainers.GenericContainer(ctx, req)
	if ctr != nil {
		d.ctrs[b.id] = ctr
	}
	if err != nil {
		return fmt.Errorf("%w: start broker %d in a container of %s: %w %s", ErrDocker, b.id, d.image, err, dockerHint)
	}
	return nil
}

// kill removes b's container (terminate kills it first); startBroker runs
// a new one on the same files and ports.
func (d *dockerLauncher) kill(b *broker) error {
	if err := terminate(d.ctrs[b.id]); err != nil {
		return err
	}
	delete(d.ctrs, b.id)
	return nil
}

func (d *dockerLauncher) exited(b *broker) error {
	ctr := d.ctrs[b.id]
	if ctr == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ctr.State(ctx)
	if err != nil {
		return fmt.Errorf("%w: state of broker %d's container %s: %w", ErrDocker, b.id, ctr.GetContainerID()[:12], err)
	}
	if st.Running || st.Status == container.StateCreated {
		return nil
	}
	out, err := containerLogs(ctx, ctr)
	if err != nil {
		out = []byte(err.Error())
	}
	return fmt.Errorf("%w: broker %d's container %s exited early (status %d); %s\ntail of its output:\n%s",
		ErrBrokerExited, b.id, ctr.GetContainerID()[:12], st.ExitCode, b.serverLogTail(), tail(out, logTailBytes))
}

// stop terminates the brokers' containers in parallel and closes the
// client.
func (d *dockerLauncher) stop() error {
	errs := make([]error, 0, len(d.ctrs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ctr := range d.ctrs {
		wg.Go(func() {
			if err := terminate(ctr); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, d.cli.Close())...)
}
