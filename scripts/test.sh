#!/usr/bin/env bash
# The whole gostream test suite, runnable on a fresh Debian machine:
#   bash scripts/test.sh
# It installs what is missing (Java 17 and Maven from Debian; the Kafka jars
# are resolved from Maven Central by the test harness itself; Go modules by
# the go tool), checks formatting and vet, runs the fast unit tests, then the
# integration tests against a real 3-broker Apache Kafka (KRaft) cluster that
# the harness starts on 127.0.0.1 and stops afterwards. The unit tests, and
# the engine's integration tests, run under the race detector.
#
# The integration tests run twice: on local JVM brokers (process backend) and
# in containers through testcontainers-go (docker backend; scripts/kafka-image.sh
# installs Docker from Debian if needed, starts dockerd on loopback-only
# networking and builds the Kafka image from the Maven jars, pulling nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

need_pkgs=()
command -v java >/dev/null || need_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_pkgs+=(maven)
if ((${#need_pkgs[@]})); then
	step "installing ${need_pkgs[*]} with apt-get"
	apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}"
fi
command -v go >/dev/null || { echo "Go 1.26+ is required: https://go.dev/doc/install" >&2; exit 1; }

step "go mod download"
go mod download

step "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n "$unformatted" ]]; then
	echo "gofmt needed on:" >&2; echo "$unformatted" >&2; exit 1
fi
go vet ./...

# The unit tests run under the race detector here; the integration step
# below runs them again without it, except the engine's.
step "unit tests under the race detector (go test -short -race)"
go test -short -race -count=1 ./...

step "integration tests on real Apache Kafka, process backend (one package at a time: each starts a 3-broker cluster)"
# The engine's run under the race detector, the gostream processes that
# TestIntegrationKillRestart kills included (the package took 193 s so on a
# 2-core machine; its integration tests of the time 62 s, 47 s without).
GOSTREAM_KAFKA_BACKEND=process go test -race -count=1 -timeout 40m ./engine
GOSTREAM_KAFKA_BACKEND=process go test -count=1 -p 1 -timeout 40m $(go list ./... | grep -vx github.com/gostream/gostream/engine)

step "integration tests again on the docker backend (testcontainers-go, a Kafka image built locally from the same jars)"
start=$(date +%s)
# kafka-image.sh starts dockerd if no engine answers; this script then stops
# it when it ends, as tests stop what they start. An engine that was already
# running is left alone.
if ! docker info >/dev/null 2>&1; then
	trap 'pkill -x dockerd && for _ in $(seq 60); do pgrep -x dockerd >/dev/null || break; sleep 0.5; done' EXIT
fi
eval "$(bash scripts/kafka-image.sh)"
GOSTREAM_KAFKA_BACKEND=docker go test -count=1 -p 1 -timeout 40m -run 'TestIntegration|TestCluster' ./engine ./kafkatest
echo "docker backend: $(( $(date +%s) - start ))s including the image check"
