#!/bin/bash
# bench/alternate.sh: a -gostream wrapper for bench/cmd/suite that alternates two gostream
# binaries round by round, so that one suite run measures both under the same load.
#   ALT_A=/tmp/x/before ALT_B=/tmp/x/after ALT_DIR=/tmp/x/alt [ALT_PROF=1] \
#     flock /tmp/gostream-kafka.lock env GOSTREAM_KAFKA_BACKEND=process go run ./bench/cmd/suite \
#     -systems gostream,gostream-cluster -runs throughput -n 2000000 -repeats 6 -gostream bench/alternate.sh -results /tmp/x/res
# Round k (1-based) of each system runs A when k is odd, B when even (a round's workers
# and its submit share the choice). $ALT_DIR/log lists each choice. With ALT_PROF=1,
# workers and local submits write CPU profiles to $ALT_DIR/prof/{A,B}-{worker,local}-PID.prof.
set -e
: "${ALT_A:?}" "${ALT_B:?}" "${ALT_DIR:?}"
mkdir -p "$ALT_DIR/prof" "$ALT_DIR/rounds"
arg() { # the value of flag $1 in the rest
  local f=$1; shift
  while [ $# -gt 0 ]; do [ "$1" = "$f" ] && { echo "$2"; return; }; shift; done
}
choose() { # $1: counter name, $2: the round's work directory; prints A or B
  (
    flock 9
    local key; key=$(echo "$2" | md5sum | cut -c1-16)
    if [ ! -f "$ALT_DIR/rounds/$key" ]; then
      local f="$ALT_DIR/$1.n" n=0
      [ -f "$f" ] && n=$(cat "$f")
      n=$((n+1)); echo $n > "$f"
      if [ $((n % 2)) -eq 1 ]; then echo A; else echo B; fi > "$ALT_DIR/rounds/$key"
    fi
    cat "$ALT_DIR/rounds/$key"
  ) 9>"$ALT_DIR/lock"
}
prof=()
sink=$(arg --sink "$@"); sinkdir=$(dirname "${sink#jsonl:}")
case "$1" in
worker) which=$(choose cluster "$(dirname "$(dirname "$(arg --data "$@")")")"); kind=worker ;;
submit)
  if [[ " $* " == *" --checkpoint "* ]]; then which=$(choose local "$sinkdir"); kind=local
  else which=$(choose cluster "$sinkdir"); kind=submit; fi ;;
*) which=A; kind=other ;;
esac
bin=$ALT_A; [ "$which" = B ] && bin=$ALT_B
echo "$(date +%T.%N) $kind $which $*" >> "$ALT_DIR/log"
if [ -n "$ALT_PROF" ] && { [ $kind = worker ] || [ $kind = local ]; }; then
  prof=(--cpuprofile "$ALT_DIR/prof/$which-$kind-$$.prof")
fi
exec "$bin" "$@" "${prof[@]}"
