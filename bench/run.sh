#!/usr/bin/env bash
# Side-by-side benchmark: weir vs HAProxy vs nginx (and h2load straight at a
# backend), gRPC over HTTP/2 on 127.0.0.1. See docs/benchmarks.md.
#
#   bench/run.sh [--quick] [--reps N] [--scenarios a,lat,rate,b,c,d,e,l4,policy,observe] [--out FILE]
#                [--duration S] [--warmup S] [--wait-quiet S] [--debug] [--no-build]
#                [--keep-workdir] [--pgo]
#
#   --quick      ~10 s smoke run (scenario a, 1 rep, 1 s per target; report in
#                target/bench-quick.md); exits non-zero if any target fails
#                to serve. CI runs this.
#   --debug      use the debug build (target/debug) instead of --release.
#   --no-build   use the binaries already in target/<profile>.
#   --pgo        measure the profile-guided build of weir as "weir": build it
#                with bench/pgo.sh first (with --no-build: use the one
#                already in target/pgo/).
#   --wait-quiet S  first wait up to S s for other jobs on the machine to end.
#
# Environment: PROXY_CPUS (default 0), LOAD_CPUS (1), BACKEND_CPUS
# (= LOAD_CPUS), PROXY_THREADS (1: weir/haproxy nbthread, nginx
# worker_processes), H2LOAD_THREADS (1), IDLE_CONNS (10000; 200 with --quick),
# HAPROXY_EXTRA_CFG (one more haproxy config file, e.g. tune.* lines),
# BENCH_REPS (3), BENCH_DURATION (4 s), BENCH_MAX_OTHER (25: a run during
# which other jobs used more than this % of a CPU is measured again, at most
# BENCH_RETRIES (2; 0 with --quick) more times), BENCH_MAX_STEAL (25: the
# same for hypervisor steal time).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=1
pgo=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) profile=debug ;;
        --no-build) build=0 ;;
        --pgo) pgo=1 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) args+=("$1") ;;
    esac
    shift
done

# Tools: haproxy, nginx (+ its dynamic stream module for the L4 scenario),
# h2load and nghttp (nghttp2-client), taskset, openssl, python3.
need=()
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

if [ "$build" = 1 ]; then
    echo "== cargo build ($profile): weir, weir-echo" >&2
    if [ "$profile" = release ]; then
        cargo build --release --quiet -p weir -p weir-echo
    else
        cargo build --quiet -p weir -p weir-echo
    fi
fi

bin_dir="target/$profile"
if [ "$pgo" = 1 ]; then
    [ "$profile" = release ] || { echo "--pgo measures a release build; drop --debug" >&2; exit 2; }
    [ "$build" = 1 ] && bench/pgo.sh
    host=$(rustc -vV | sed -n 's/^host: //p')
    [ -x "target/pgo/$host/release/weir" ] || { echo "no PGO build in target/pgo/$host/release: run bench/pgo.sh" >&2; exit 1; }
    # The harness takes weir and weir-echo from one folder.
    bin_dir=target/bench-pgo
    mkdir -p "$bin_dir"
    cp "target/pgo/$host/release/weir" target/release/weir-echo "$bin_dir/"
fi

export PYTHONDONTWRITEBYTECODE=1
exec python3 bench/harness.py --bin-dir "$bin_dir" "${args[@]}"
