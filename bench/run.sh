#!/usr/bin/env bash
# Jumpgate's benchmarks against the real alternatives, in one command (as root):
#
#   bash bench/run.sh            # everything
#   bash bench/run.sh ssh        # only the named benchmarks (ssh tunnel auth_api cert_issuance backends recordings storm ...)
#   BEFORE_BIN_DIR=/path/to/old/target/release bash bench/run.sh watch-cpu
#                                # idle CPU, polling (that build) vs Watch (this one):
#                                # only when named, and only with BEFORE_BIN_DIR
#
# Installs what the comparisons need if missing (openssh-server/-client, etcd-server,
# postgresql, haproxy, and s3s-fs from crates.io for bench-recordings), builds the
# release binaries, runs each benchmark (each starts its processes on loopback in a
# temporary directory and stops and removes them at the end), keeps every benchmark's
# full output in bench/out/NAME.txt, appends the machine-readable line each prints
# (`JSON: {...}`) to bench/results.json, and writes bench/RESULTS.md from the latest
# record of each (target/release/bench-report). bench/HISTORY.md explains the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/run.sh: run as root (it starts sshd and creates the login jgbench)" >&2
    exit 1
fi
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
[ -x /usr/lib/openssh/sftp-server ] || missing+=(openssh-sftp-server)
command -v ssh >/dev/null 2>&1 && command -v scp >/dev/null 2>&1 || missing+=(openssh-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler libprotobuf-dev)
# bench-backends runs real etcd and PostgreSQL servers.
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || missing+=(etcd-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# bench-storm runs HAProxy in front of three proxies.
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
    # Keep the packages' own services from starting: the benchmarks start their own.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=yes
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(cert_issuance auth_api tunnel ssh tunnels storm revocation backends recordings)

# bench-recordings runs a real S3-compatible server (s3s-fs), pinned as test.sh pins it.
for bench in "${benches[@]}"; do
    if [ "$bench" = recordings ] && ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
        cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary
    fi
done

cargo build --release --locked -p jumpgate -p jsh -p jumpgate-bench
mkdir -p bench/out
for bench in "${benches[@]}"; do
    [ -x "target/release/bench-$bench" ] || { echo "bench/run.sh: no benchmark named $bench" >&2; exit 1; }
    case "$bench" in
        cert_issuance) args=(5000) ;;
        tunnel) args=(256) ;;
        tunnels) args=(bench --counts 1000,10000) ;;
        storm) args=(--count 1000) ;;
        watch-cpu)
            [ -n "${BEFORE_BIN_DIR:-}" ] || { echo "bench/run.sh: watch-cpu needs BEFORE_BIN_DIR (target/release of a build of branch bench-watch-before, see bench/HISTORY.md)" >&2; exit 1; }
            args=(bench --before-bin-dir "$BEFORE_BIN_DIR" --after-bin-dir target/release ${WATCH_CPU_ARGS:-}) ;;
        *) args=() ;;
    esac
    echo "==> $bench ${args[*]}"
    "target/release/bench-$bench" "${args[@]}" 2>&1 | tee "bench/out/$bench.txt"
    { grep '^JSON: ' "bench/out/$bench.txt" || true; } | sed 's/^JSON: //' >> bench/results.json
done
target/release/bench-report bench/results.json bench/RESULTS.md
