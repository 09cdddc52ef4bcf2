package kafkatest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// externalTimeout bounds the wait for an external cluster to answer.
const externalTimeout = 30 * time.Second

// externalBackend is a cluster someone else runs; it starts and stops
// nothing. Tools run as local JVMs.
type externalBackend struct {
	localTools
	seeds []string
}

// startExternal checks that the cluster in BrokersEnv answers and has at
// least cfg.brokers brokers. Tools keep their files in dir.
func startExternal(ctx context.Context, cfg config, dir string) (*externalBackend, error) {
	var seeds []string
	for s := range strings.SplitSeq(os.Getenv(BrokersEnv), ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("%w: %s=external needs %s=host:port,... (or unset %s to start local brokers)",
			ErrBackend, BackendEnv, BrokersEnv, BackendEnv)
	}
	cfg.logf("kafkatest: using external cluster %s", strings.Join(seeds, ","))
	ctx, cancel := context.WithTimeout(ctx, externalTimeout)
	defer cancel()
	if err := waitBrokers(ctx, seeds, cfg.brokers, nil, cfg.logf); err != nil {
		return nil, fmt.Errorf("%w (is the cluster in %s running, with at least %d brokers? or ask for fewer with Brokers(n))",
			err, BrokersEnv, cfg.brokers)
	}
	tools, err := newLocalTools(dir, cfg.logf)
	if err != nil {
		return nil, err
	}
	return &externalBackend{localTools: tools, seeds: seeds}, nil
}

func (e *externalBackend) addrs() []string  { return append([]string(nil), e.seeds...) }
func (e *externalBackend) persistent() bool { return true }
func (e *externalBackend) stop() error      { return nil }
