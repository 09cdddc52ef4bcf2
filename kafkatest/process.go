package kafkatest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// processLauncher runs brokers and tools as local JVMs.
type processLauncher struct {
	localTools
	java, libs string
	procs      map[int]*brokerProc // by broker id
}

// brokerProc is a running broker JVM.
type brokerProc struct {
	cmd     *exec.Cmd
	console string        // its stdout and stderr
	done    chan struct{} // closed once cmd.Wait returned; then waitErr is set
	waitErr error
}

func (p *brokerProc) hasExited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startProcess starts a cluster of local JVMs with their files under dir.
func startProcess(ctx context.Context, cfg config, dir string) (*brokerSet, error) {
	java, libs, err := localJava(ctx, cfg.logf)
	if err != nil {
		return nil, err
	}
	return startBrokers(ctx, cfg, dir, func(dir string) (launcher, error) {
		tools, err := newLocalTools(dir, cfg.logf)
		if err != nil {
			return nil, err
		}
		return &processLauncher{localTools: tools, java: java, libs: libs, procs: map[int]*brokerProc{}}, nil
	})
}

// startBroker starts a broker JVM and a goroutine that reaps it; stop waits
// for that goroutine through done.
func (l *processLauncher) startBroker(_ context.Context, b *broker) error {
	p := &brokerProc{console: filepath.Join(b.dir, "console.log"), done: make(chan struct{})}
	console, err := os.OpenFile(p.console, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644) // a restart appends
	if err != nil {
		return fmt.Errorf("kafkatest: create broker %d console log: %w", b.id, err)
	}
	p.cmd = javaCommand(nil, l.java, b.jvm, l.libs, filepath.Join(b.dir, "log4j.properties"),
		filepath.Join(b.dir, "logs"), brokerMain, filepath.Join(b.dir, "server.properties"))
	p.cmd.Stdout, p.cmd.Stderr = console, console
	if err := p.cmd.Start(); err != nil {
		console.Close()
		return fmt.Errorf("%w: start broker %d: %v", ErrBrokerExited, b.id, err)
	}
	l.procs[b.id] = p
	go func() {
		p.waitErr = p.cmd.Wait()
		console.Close()
		close(p.done)
	}()
	return nil
}

func (l *processLauncher) exited(b *broker) error {
	p := l.procs[b.id]
	if p == nil || !p.hasExited() {
		return nil
	}
	return fmt.Errorf("%w: broker %d exited early (%v); %s\ntail of %s:\n%s",
		ErrBrokerExited, b.id, p.waitErr, b.serverLogTail(), p.console, tailFile(p.console))
}

func (l *processLauncher) kill(b *broker) error {
	p := l.procs[b.id]
	if err := signalGroup(p.cmd, syscall.SIGKILL); err != nil && !p.hasExited() {
		return fmt.Errorf("kafkatest: kill broker %d (pid %d): %w", b.id, p.cmd.Process.Pid, err)
	}
	<-p.done
	return nil
}

// stop kills every broker and waits for it to be reaped (Close says why
// the brokers get no graceful shutdown).
func (l *processLauncher) stop() error {
	for _, p := range l.procs {
		_ = signalGroup(p.cmd, syscall.SIGKILL)
	}
	for _, p := range l.procs {
		<-p.done
	}
	return nil
}
