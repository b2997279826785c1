#!/usr/bin/env bash
# Profile weir under the load of benchmark scenario (a) (small unary calls,
# h2load -c 16 -m 32) and print its hottest functions. See docs/benchmarks.md.
#
#   bench/profile.sh perf      [--seconds N] [--no-build]   # sampling (cpu-clock), DWARF call graphs
#   bench/profile.sh callgrind [--calls N]   [--no-build]   # exact instruction counts, ~50x slower
#
# The raw profile (perf.data or callgrind.out) goes to target/bench-profile/<tool>/
# (ignored by git; open it with perf report / callgrind_annotate /
# kcachegrind); a short text summary (top functions, inclusive and self) goes
# to bench/results/profile-<tool>.txt. Environment:
# PROXY_CPUS (0) for weir, LOAD_CPUS (1) for h2load and the two backends.
# Every process started here is kept by PID and stopped by PID.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
cd "$(dirname "$0")/.."
tool="${1:-}"
case "$tool" in perf|callgrind) shift ;; *) sed -n '2,13p' "$0"; exit 2 ;; esac
seconds=8
calls=20000
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift ;;
        --calls) calls="$2"; shift ;;
        --no-build) build=0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
proxy_cpus="${PROXY_CPUS:-0}"
load_cpus="${LOAD_CPUS:-1}"
export PATH="$PATH:/usr/sbin:/sbin"
if [ "$tool" = perf ] && ! command -v perf >/dev/null 2>&1; then
    echo "perf is not installed (Debian: apt-get install linux-perf)" >&2; exit 1
fi
if [ "$tool" = callgrind ] && ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1
fi
command -v h2load >/dev/null 2>&1 || { echo "h2load missing: run bench/run.sh once or apt-get install nghttp2-client" >&2; exit 1; }
[ "$build" = 1 ] && cargo build --release --quiet -p weir -p weir-echo

out="target/bench-profile/$tool"
mkdir -p "$out"
summary="bench/results/profile-$tool.txt"
work="$(mktemp -d /tmp/weir-profile-XXXXXX)"
# Snapshot the binaries: a parallel `cargo build` must not swap them mid-run.
cp target/release/weir target/release/weir-echo "$work/"
. bench/lib.sh
be1=$(port); be2=$(port); fe=$(port)
taskset -c "$load_cpus" "$work/weir-echo" --listen "127.0.0.1:$be1" --id echo1 >"$work/echo1.log" 2>&1 & pids+=($!)
taskset -c "$load_cpus" "$work/weir-echo" --listen "127.0.0.1:$be2" --id echo2 >"$work/echo2.log" 2>&1 & pids+=($!)
sed -e "s/@@THREADS@@/1/; s/@@MAXCONN@@/10200/; s/@@PORT@@/$fe/; s/@@BE1@@/$be1/; s/@@BE2@@/$be2/" \
    bench/configs/proxy-http.cfg >"$work/weir.cfg"
python3 bench/grpc_body.py "$work/body.bin" --payload 64
wait_port "$be1"; wait_port "$be2"

h2() {  # h2load, scenario (a)'s shape
    taskset -c "$load_cpus" h2load -c 16 -m 32 "$@" -d "$work/body.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$fe/weir.echo.Echo/Unary" \
        | grep -E '^(finished|requests|status codes)'
}

if [ "$tool" = perf ]; then
    taskset -c "$proxy_cpus" "$work/weir" -f "$work/weir.cfg" 2>"$work/weir.log" & weir=$!; pids+=($weir)
    wait_port "$fe"
    h2 -D 1 >/dev/null   # warm-up: pools, allocator
    perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$weir" -o "$out/perf.data" \
        -- sleep "$seconds" 2>"$out/perf-record.log" & rec=$!
    h2 -D "$seconds" | tee "$out/h2load.txt"
    wait "$rec" || true
    perf report -i "$out/perf.data" --no-children --stdio -g none --sort dso \
        2>/dev/null >"$out/report-dso.txt" || true
    perf report -i "$out/perf.data" --children --no-inline --stdio -g none --percent-limit 1 \
        --sort symbol 2>/dev/null >"$out/report-inclusive.txt" || true
    perf report -i "$out/perf.data" --no-children --stdio -g none --percent-limit 0.3 \
        --sort dso,symbol 2>/dev/null >"$out/report-self.txt" || true
else
    taskset -c "$proxy_cpus" valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
        --separate-threads=no "$work/weir" -f "$work/weir.cfg" 2>"$work/weir.log" & weir=$!; pids+=($weir)
    wait_port "$fe" || { cat "$work/weir.log"; exit 1; }
    h2 -n "$calls" | tee "$out/h2load.txt"
    kill -TERM "$weir"
    for _ in $(seq 1 600); do kill -0 "$weir" 2>/dev/null || break; sleep 0.1; done
    wait "$weir" || true
    callgrind_annotate --inclusive=yes "$out/callgrind.out" >"$out/report-inclusive.txt" 2>/dev/null || true
    callgrind_annotate "$out/callgrind.out" >"$out/report-self.txt" 2>/dev/null || true
fi
# Short summary: long crate paths shortened, top 45 lines of each report.
short() {
    grep -E '^ *[0-9.,]+(%| )' "$1" | grep -v '^#' \
        | sed -E 's#/root/.cargo/registry/src/index.crates.io-[0-9a-f]+/##g; s#/rustc/[0-9a-f]+/library/##g; s#\[?/tmp/weir-profile-[A-Za-z0-9]+/weir\]?##g; s#[[:space:]]+$##' \
        | head -45 | cut -c1-220 || true
}
{
    echo "weir profile ($tool), scenario (a) shape: h2load -c 16 -m 32, 64-byte unary calls"
    echo "date: $(date -Is); weir $(git rev-parse --short HEAD 2>/dev/null || echo '?') (binary sha256 $(sha256sum "$work/weir" | cut -c1-12)); CPUs: weir $proxy_cpus, load $load_cpus"
    echo "raw profile: $out/ (not kept in git)"
    echo; echo "== h2load"; cat "$out/h2load.txt"
    if [ -s "$out/report-dso.txt" ]; then echo; echo "== by object (self)"; short "$out/report-dso.txt"; fi
    echo; echo "== inclusive (top)"; short "$out/report-inclusive.txt"
    echo; echo "== self (top)"; short "$out/report-self.txt"
} >"$summary"
cat "$summary"
