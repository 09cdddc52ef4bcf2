#!/usr/bin/env bash
# kafka-image.sh makes a local Docker image that runs Apache Kafka for
# kafkatest's docker backend, without pulling anything from a registry, and
# prints the line that selects it:
#
#	eval "$(bash scripts/kafka-image.sh)"
#	GOSTREAM_KAFKA_BACKEND=docker go test ./...
#
# Idempotent, in order: installs Docker from Debian (docker.io) if dockerd is
# missing; starts dockerd (no bridge, no iptables: containers use host
# networking only, so all traffic stays on loopback; log in
# $GOSTREAM_DOCKERD_LOG, default /tmp/gostream-dockerd.log) if no engine
# answers; builds the image if it is missing.
#
# The image is FROM scratch: a jlink-built JRE 17 at /opt/java/openjdk, the
# glibc libraries it links to (found with ldd), the Kafka jars of
# kafkatest.JarsDir (resolved from Maven Central) at /opt/kafka/libs,
# /etc/passwd with appuser (uid 1000) and /tmp with mode 1777: the paths of the
# official apache/kafka image, so one container command runs on both. It has
# no shell. Its tag is gostream/kafka:<kafka version>-<hash>, the hash
# covering the jar list, the JDK release, the module list and this script, so
# the image is rebuilt only when one of them changes.
#
# stdout holds only the final line:
#
#	export GOSTREAM_KAFKA_IMAGE=gostream/kafka:3.9.1-<hash> TESTCONTAINERS_RYUK_DISABLED=true
#
# (Ryuk, testcontainers' reaper, is an image from a registry; kafkatest
# removes its own containers, also those a crashed test left behind.) Logs go
# to stderr. Needs root (or sudo-less access to apt-get and dockerd) for the
# first two steps only. Environment: GOSTREAM_JLINK_JDK, the JDK whose jlink
# builds the JRE (default: Debian's openjdk-17, installed if missing).
set -euo pipefail

log() { printf 'kafka-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kafka_version=$(sed -n 's/^const KafkaVersion = "\(.*\)"$/\1/p' "$repo/kafkatest/jars.go")
[[ -n $kafka_version ]] || die "cannot read KafkaVersion from $repo/kafkatest/jars.go"
dockerd_log=${GOSTREAM_DOCKERD_LOG:-/tmp/gostream-dockerd.log}
# Java modules Kafka's broker and tools load (java.desktop: log4j reads
# its configuration through java.beans).
modules=java.base,java.desktop,java.instrument,java.logging,java.management,java.management.rmi,java.naming,java.net.http,java.rmi,java.scripting,java.security.jgss,java.security.sasl,java.sql,java.xml,jdk.crypto.ec,jdk.jfr,jdk.management,jdk.naming.dns,jdk.net,jdk.unsupported,jdk.zipfs

apt_install() {
	log "installing $* from Debian"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q "$@" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$@" >&2; } ||
		die "apt-get install $* failed (run as root, or install $* yourself)"
}

ensure_dockerd() {
	command -v dockerd >/dev/null || apt_install docker.io
	if docker info >/dev/null 2>&1; then
		return
	fi
	log "starting dockerd (log: $dockerd_log)"
	setsid dockerd --bridge=none --iptables=false </dev/null >>"$dockerd_log" 2>&1 &
	for _ in $(seq 120); do
		docker info >/dev/null 2>&1 && return
		sleep 0.5
	done
	tail -n 30 "$dockerd_log" >&2 || true
	die "dockerd did not answer within 60s (see $dockerd_log above)"
}

jdk_home() {
	local jdk=${GOSTREAM_JLINK_JDK:-/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)}
	if [[ ! -x $jdk/bin/jlink ]]; then
		[[ -z ${GOSTREAM_JLINK_JDK:-} ]] || die "GOSTREAM_JLINK_JDK=$jdk has no bin/jlink"
		apt_install openjdk-17-jdk-headless
	fi
	printf '%s\n' "$jdk"
}

# native_libs extracts the JNI libraries bundled in the Kafka jars (zstd-jni,
# snappy-java, lz4-java) into dir, so that copy_libs finds what they link to
# (zstd-jni needs libpthread, which the JRE itself does not).
native_libs() {
	local jdk=$1 libs=$2 dir=$3 jar names
	for jar in "$libs"/*.jar; do
		names=$("$jdk/bin/jar" tf "$jar" | grep '\.so$' || true)
		[[ -z $names ]] || (cd "$dir" && "$jdk/bin/jar" xf "$jar" $names)
	done
}

# copy_libs copies every shared library that the ELF files under jre and
# native link to, outside jre itself, into root at the same path, and the
# dynamic loader.
copy_libs() {
	local root=$1 jre=$2 native=$3
	find "$jre" "$native" -type f \( -name '*.so' -o -path "$jre/bin/*" \) -print0 |
		{ xargs -0 ldd 2>/dev/null || true; } | # other architectures' .so files fail ldd
		awk -v jre="$jre" '$2 == "=>" && $3 ~ /^\// && index($3, jre) != 1 {print $3} /^\t\// {print $1}' |
		sort -u |
		while read -r lib; do
			cp -L --parents "$lib" "$root"
		done
}

build() {
	local tag=$1 jdk=$2 libs=$3 root
	root=$(mktemp -d)
	trap 'rm -rf "$root"; trap - RETURN' RETURN
	log "building $tag in $root"
	"$jdk/bin/jlink" --add-modules "$modules" --output "$root/opt/java/openjdk" \
		--strip-debug --no-man-pages --no-header-files --compress=2
	mkdir "$root.native"
	native_libs "$jdk" "$libs" "$root.native"
	copy_libs "$root" "$root/opt/java/openjdk" "$root.native"
	rm -rf "$root.native"
	mkdir -p "$root/opt/kafka/libs" "$root/etc" "$root/tmp"
	cp "$libs"/*.jar "$root/opt/kafka/libs/"
	chmod 1777 "$root/tmp"
	printf 'root:x:0:0:root:/root:/nonexistent\nappuser:x:1000:1000::/tmp:/nonexistent\n' >"$root/etc/passwd"
	printf 'root:x:0:\nappuser:x:1000:\n' >"$root/etc/group"
	tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
		docker import \
			--change 'ENV PATH=/opt/java/openjdk/bin' \
			--change 'ENV JAVA_HOME=/opt/java/openjdk' \
			--change 'USER 1000:1000' \
			--change 'ENTRYPOINT ["/opt/java/openjdk/bin/java"]' \
			--change 'CMD ["-version"]' \
			- "$tag" >&2
	# Drop the images that older inputs made.
	docker image ls --format '{{.Repository}}:{{.Tag}}' "gostream/kafka" |
		grep -Fvx "$tag" | grep "^gostream/kafka:$kafka_version-" | xargs -r docker image rm >&2 || true
}

main() {
	ensure_dockerd
	local jdk libs hash tag
	jdk=$(jdk_home)
	command -v mvn >/dev/null || apt_install maven
	libs=$(cd "$repo" && go run ./kafkatest/internal/kafkajars)
	hash=$({
		ls "$libs"
		cat "$jdk/release"
		echo "$modules"
		cat "${BASH_SOURCE[0]}"
	} | sha256sum | cut -c1-12)
	tag=gostream/kafka:$kafka_version-$hash
	if docker image inspect "$tag" >/dev/null 2>&1; then
		log "$tag is up to date"
	else
		local start=$SECONDS
		build "$tag" "$jdk" "$libs"
		log "built $tag in $((SECONDS - start))s"
	fi
	docker run --rm --network host "$tag" -version >&2 || die "$tag does not run java -version"
	printf 'export GOSTREAM_KAFKA_IMAGE=%s TESTCONTAINERS_RYUK_DISABLED=true\n' "$tag"
}

main "$@"
