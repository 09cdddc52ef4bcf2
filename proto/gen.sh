#!/usr/bin/env bash
# Generates the Go code of proto/*.proto (run by `go generate ./proto`).
# It uses protoc 3.21.12 (Debian's protobuf-compiler, installed with apt-get
# when missing) and the Go plugins at the versions pinned below, built into a
# temporary directory, so the output is the same on any machine.
set -euo pipefail
cd "$(dirname "$0")"

protoc_gen_go=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
protoc_gen_go_grpc=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1

if ! command -v protoc >/dev/null; then
	apt-get update -qq && apt-get install -y -qq protobuf-compiler
fi
if [[ "$(protoc --version)" != "libprotoc 3.21.12" ]]; then
	echo "gen.sh: $(command -v protoc) is $(protoc --version); the generated code is made with libprotoc 3.21.12 (Debian bookworm's protobuf-compiler)" >&2
	exit 1
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for tool in "$protoc_gen_go" "$protoc_gen_go_grpc"; do GOBIN=$bin go install "$tool"; done

opt=module=github.com/gostream/gostream/proto
PATH=$bin:$PATH protoc --proto_path=. \
	--go_out=. --go_opt=$opt \
	--go-grpc_out=. --go-grpc_opt=$opt \
	plan.proto cluster.proto
