package kafkatest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// jvmToolFlags are the JVM flags for short-lived Kafka tools.
var jvmToolFlags = []string{
	"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
	"-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
}

// javaPath returns $JAVA_HOME/bin/java when JAVA_HOME is set, else java on
// PATH.
func javaPath() (string, error) {
	if home := os.Getenv("JAVA_HOME"); home != "" {
		p := filepath.Join(home, "bin", "java")
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: JAVA_HOME=%s has no bin/java (fix or unset JAVA_HOME): %v", ErrJava, home, err)
		}
		return p, nil
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("%w: no java on PATH (install Java 17+ or set JAVA_HOME): %v", ErrJava, err)
	}
	return p, nil
}

// javaArgs returns the JVM arguments that run class main from the jars in
// libs. log4jConf is the log4j 1 properties file; logsDir is kafka.logs.dir.
func javaArgs(flags []string, libs, log4jConf, logsDir, main string, args ...string) []string {
	argv := append([]string{}, flags...)
	argv = append(argv,
		"-Dlog4j.configuration=file:"+log4jConf,
		"-Dkafka.logs.dir="+logsDir,
		"-cp", filepath.Join(libs, "*"),
		main)
	return append(argv, args...)
}

// javaCommand builds a local JVM command from javaArgs. With a non-nil ctx,
// cancelling ctx kills the JVM's process group; brokers pass nil and are
// stopped by Close.
func javaCommand(ctx context.Context, java string, flags []string, libs, log4jConf, logsDir, main string, args ...string) *exec.Cmd {
	argv := javaArgs(flags, libs, log4jConf, logsDir, main, args...)
	if ctx == nil {
		cmd := exec.Command(java, argv...)
		setProcAttrs(cmd)
		return cmd
	}
	return toolCommand(ctx, java, argv...)
}

// writeToolLog4j writes the tools' log4j configuration into dir and returns
// its path.
func writeToolLog4j(dir string) (string, error) {
	p := filepath.Join(dir, "tools-log4j.properties")
	if err := os.WriteFile(p, []byte(toolLog4j), 0o644); err != nil {
		return "", fmt.Errorf("kafkatest: write %s: %w", p, err)
	}
	return p, nil
}

// localTools runs Kafka tools as JVMs on this machine, from the jars of
// JarsDir (resolved on first use). Safe for concurrent use.
type localTools struct {
	dir  string // kafka.logs.dir of the tools
	conf string // tools' log4j configuration
	logf func(string, ...any)
}

// newLocalTools writes the tools' log4j configuration into dir.
func newLocalTools(dir string, logf func(string, ...any)) (localTools, error) {
	conf, err := writeToolLog4j(dir)
	return localTools{dir: dir, conf: conf, logf: logf}, err
}

// localJava finds java and the Kafka jars (resolving them on first use).
func localJava(ctx context.Context, logf func(string, ...any)) (java, libs string, err error) {
	if java, err = javaPath(); err != nil {
		return "", "", err
	}
	libs, err = JarsDir(ctx, logf)
	return java, libs, err
}

func (l localTools) runTool(ctx context.Context, main string, stdin io.Reader, args ...string) ([]byte, error) {
	java, libs, err := localJava(ctx, l.logf)
	if err != nil {
		return nil, err
	}
	cmd := javaCommand(ctx, java, jvmToolFlags, libs, l.conf, l.dir, main, args...)
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &out
	err = cmd.Run()
	return out.Bytes(), err
}

// toolCommand is exec.CommandContext for a child that must die with us and
// whose whole process group is killed when ctx is cancelled.
func toolCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	setProcAttrs(cmd)
	cmd.Cancel = func() error { return signalGroup(cmd, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// setProcAttrs puts the child in its own process group and has the kernel
// kill it when this process dies, even by SIGKILL.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the process group of a started command.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.Process == nil {
		return nil
	}
	return syscall.Kill(-cmd.Process.Pid, sig)
}
