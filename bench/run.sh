#!/usr/bin/env bash
# Runs the gostream benchmark suite: gostream vs Spark Structured Streaming vs
# Kafka Streams' WordCountDemo vs a plain franz-go consumer, on a 3-broker Kafka
# cluster started for the run.
#
#   bash bench/run.sh [suite flags]       e.g. bash bench/run.sh -n 1000000 -rates 50000
#
# Sets up, once, under ${GOSTREAM_BENCH_CACHE:-~/.cache/gostream-bench}: a Python
# venv with pyspark and matplotlib, Spark's Ivy cache with spark-sql-kafka, and
# Kafka Streams' examples jar with its dependencies (bench/kstreams/pom.xml).
# Then builds gostream and the suite and runs it; all flags go to the suite
# (go run ./bench/cmd/suite -h lists them). Not for CI: pyspark is large.
set -euo pipefail

PYSPARK_VERSION=3.5.7 # spark-sql-kafka-0-10_2.12 must be published at the same version
CACHE=${GOSTREAM_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gostream-bench}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if [[ -n "${CI:-}" ]]; then
	die "refusing to run in CI (CI=$CI): the suite installs pyspark (~300 MB) and runs for many minutes"
fi
command -v go >/dev/null || die "go not found on PATH (install Go 1.26+)"
command -v java >/dev/null || die "java not found on PATH: Kafka and Spark need Java 17 (e.g. apt-get install openjdk-17-jre-headless)"
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
[[ "${java_major:-0}" -ge 17 ]] || die "java is version ${java_major:-unknown}; Kafka 3.9 and Spark 3.5 here need Java 17+"
command -v mvn >/dev/null || die "mvn not found on PATH: kafkatest and the kstreams system resolve Kafka's jars with Maven (apt-get install maven)"
PY=$(command -v python3 || true)
[[ -n "$PY" ]] || die "python3 not found on PATH (apt-get install python3 python3-venv)"

mkdir -p "$CACHE"
VENV="$CACHE/venv"
if [[ ! -x "$VENV/bin/python" ]]; then
	say "creating a Python venv in $VENV"
	"$PY" -m venv "$VENV" || die "python3 -m venv failed: install the venv module (apt-get install python3-venv)"
fi
if ! "$VENV/bin/python" -c "import pyspark, matplotlib, sys; sys.exit(pyspark.__version__ != '$PYSPARK_VERSION')" 2>/dev/null; then
	say "installing pyspark $PYSPARK_VERSION and matplotlib into $VENV (a few minutes, ~400 MB)"
	"$VENV/bin/python" -m pip install --progress-bar on "pyspark==$PYSPARK_VERSION" matplotlib ||
		die "pip install failed: is PyPI reachable? (pip needs network access to PyPI)"
fi
SPARK_HOME=$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
export SPARK_HOME

IVY="$CACHE/ivy"
if ! ls "$IVY"/jars/org.apache.spark_spark-sql-kafka-0-10_2.12-"$PYSPARK_VERSION".jar >/dev/null 2>&1; then
	say "resolving spark-sql-kafka $PYSPARK_VERSION from Maven Central into $IVY"
	PYSPARK_PYTHON="$VENV/bin/python" SPARK_LOCAL_IP=127.0.0.1 "$SPARK_HOME/bin/spark-submit" \
		--conf spark.jars.ivy="$IVY" \
		--packages "org.apache.spark:spark-sql-kafka-0-10_2.12:$PYSPARK_VERSION" \
		"$ROOT/bench/spark/wordcount.py" --warm >"$CACHE/warm.log" 2>&1 ||
		die "spark-submit --packages failed (is Maven Central reachable?); see $CACHE/warm.log"
fi

# Kafka Streams' WordCountDemo and its dependencies (~90 MB with RocksDB), once
# per version of the pom: the marker, written last, holds the pom's checksum, so
# an interrupted resolution or a changed pom resolves again.
KSTREAMS="$CACHE/kstreams"
KSTREAMS_LIBS="$KSTREAMS/libs"
KSTREAMS_POM_SUM=$(sha256sum <"$ROOT/bench/kstreams/pom.xml")
if [[ "$(cat "$KSTREAMS_LIBS/.resolved" 2>/dev/null)" != "$KSTREAMS_POM_SUM" ]]; then
	say "resolving kafka-streams-examples (bench/kstreams/pom.xml) from Maven Central into $KSTREAMS_LIBS"
	rm -rf "$KSTREAMS_LIBS"
	mkdir -p "$KSTREAMS"
	mvn -B -q -f "$ROOT/bench/kstreams/pom.xml" \
		org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
		-DoutputDirectory="$KSTREAMS_LIBS" -DincludeScope=runtime >"$KSTREAMS/maven.log" 2>&1 ||
		die "mvn could not resolve bench/kstreams/pom.xml (is Maven Central reachable?); see $KSTREAMS/maven.log"
	printf '%s\n' "$KSTREAMS_POM_SUM" >"$KSTREAMS_LIBS/.resolved"
fi

BIN="$CACHE/bin"
mkdir -p "$BIN"
say "building gostream and the suite"
(cd "$ROOT" && go build -o "$BIN/gostream" ./cmd/gostream && go build -o "$BIN/suite" ./bench/cmd/suite)

# Brokers run as local JVMs unless the caller chose another kafkatest backend
# (e.g. GOSTREAM_KAFKA_BACKEND=external GOSTREAM_KAFKA_BROKERS=s1:9092,...).
export GOSTREAM_KAFKA_BACKEND=${GOSTREAM_KAFKA_BACKEND:-process}
cd "$ROOT"
exec "$BIN/suite" -cache "$CACHE" -gostream "$BIN/gostream" -spark-home "$SPARK_HOME" \
	-spark-version "$PYSPARK_VERSION" -python "$VENV/bin/python" -kstreams-libs "$KSTREAMS_LIBS" "$@"
