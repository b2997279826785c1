#!/usr/bin/env bash
# Build weir with profile-guided optimisation (PGO). See docs/benchmarks.md
# ("Profile-guided build") for what it buys, measured side by side.
#
#   bench/pgo.sh [--calls N]
#
# 1. builds an instrumented weir (-Cprofile-generate) in target/pgo-gen/;
# 2. trains it on loopback: two weir-echo backends, one weir with an HTTP/2
#    frontend, a TLS one (throwaway certificate from openssl) and a
#    `mode tcp` one, h2load sending small unary calls (16 connections x 32
#    streams, and one at a time), 64 KiB unary calls, long server streams,
#    small calls over TLS and small calls through `mode tcp`;
# 3. merges the profile with llvm-profdata (rustup component llvm-tools,
#    installed here if missing) and builds the optimised binary:
#    target/pgo/x86_64-unknown-linux-gnu/release/weir (or the host triple).
#
# Needs h2load (Debian: nghttp2-client; bench/run.sh installs it) and openssl. Every
# process started here is kept by PID and stopped by PID.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
cd "$(dirname "$0")/.."
calls=200000
while [ $# -gt 0 ]; do
    case "$1" in
        --calls) calls="${2:-}"; [ $# -lt 2 ] || shift ;;
        *) sed -n '2,16p' "$0"; exit 2 ;;
    esac
    shift
done
# The smaller training runs are fractions of --calls (one at a time: /50).
case "$calls" in ''|*[!0-9]*) echo "--calls takes a number of calls, got '$calls'" >&2; exit 2 ;; esac
[ "$calls" -ge 400 ] || { echo "--calls must be at least 400 (got $calls)" >&2; exit 2; }
command -v h2load >/dev/null 2>&1 || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
command -v openssl >/dev/null 2>&1 || { echo "openssl missing: apt-get install openssl" >&2; exit 1; }

host=$(rustc -vV | sed -n 's/^host: //p')
sysroot=$(rustc --print sysroot)
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    rustup component add llvm-tools
fi
[ -x "$profdata" ] || { echo "llvm-profdata not found at $profdata" >&2; exit 1; }

root=$(pwd)
data="$root/target/pgo-data"
rm -rf "$data"
mkdir -p "$data"
# --target keeps RUSTFLAGS off build scripts and proc macros: only the weir
# binary and its libraries are instrumented.
RUSTFLAGS="-Cprofile-generate=$data/raw" \
    cargo build --release --quiet -p weir --target "$host" --target-dir target/pgo-gen
cargo build --release --quiet -p weir-echo
# Build scripts may not write profiles, but make sure: train from an empty dir.
rm -rf "$data/raw"

work="$(mktemp -d /tmp/weir-pgo-XXXXXX)"
cp "target/pgo-gen/$host/release/weir" target/release/weir-echo "$work/"
. bench/lib.sh
be1=$(port); be2=$(port); fe=$(port); fe4=$(port); fetls=$(port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj /CN=localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/crt.pem"
"$work/weir-echo" --listen "127.0.0.1:$be1" --id e1 >/dev/null 2>&1 & pids+=($!)
"$work/weir-echo" --listen "127.0.0.1:$be2" --id e2 >/dev/null 2>&1 & pids+=($!)
cat > "$work/weir.cfg" <<EOF
global
    nbthread 1
    maxconn 10200
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend fe
    bind 127.0.0.1:$fe proto h2
    default_backend be
frontend fetls
    bind 127.0.0.1:$fetls ssl crt $work/crt.pem alpn h2
    default_backend be
frontend fe4
    mode tcp
    bind 127.0.0.1:$fe4
    default_backend be4
backend be
    balance roundrobin
    server s1 127.0.0.1:$be1 proto h2
    server s2 127.0.0.1:$be2 proto h2
backend be4
    mode tcp
    balance roundrobin
    server s1 127.0.0.1:$be1
    server s2 127.0.0.1:$be2
EOF
python3 bench/grpc_body.py "$work/small.bin" --payload 64
python3 bench/grpc_body.py "$work/big.bin" --payload 65536
python3 bench/grpc_body.py "$work/stream.bin" --payload 0 --reply-count 1000 --reply-size 1024
wait_port "$be1"; wait_port "$be2"
LLVM_PROFILE_FILE="$data/raw/weir-%p-%m.profraw" "$work/weir" -f "$work/weir.cfg" 2>"$work/weir.log" &
weir=$!; pids+=("$weir")
wait_port "$fe"; wait_port "$fe4"; wait_port "$fetls"
grpc=(-H 'content-type: application/grpc' -H 'te: trailers')
load() {  # name, h2load arguments...
    local name=$1; shift
    local out
    out=$(h2load "${grpc[@]}" "$@" | grep -E '^requests:')
    echo "  $name: $out"
    case "$out" in *" 0 failed, 0 errored"*) ;; *) echo "training run $name failed" >&2; exit 1 ;; esac
}
echo "training the instrumented weir (pid $weir):"
load "unary 16x32" -c 16 -m 32 -n "$calls" -d "$work/small.bin" "http://127.0.0.1:$fe/weir.echo.Echo/Unary"
load "unary 1x1" -c 1 -m 1 -n $((calls / 50)) -d "$work/small.bin" "http://127.0.0.1:$fe/weir.echo.Echo/Unary"
load "unary 64 KiB" -c 8 -m 4 -n $((calls / 100)) -d "$work/big.bin" "http://127.0.0.1:$fe/weir.echo.Echo/Unary"
load "server streams" -c 4 -m 4 -n 64 -d "$work/stream.bin" "http://127.0.0.1:$fe/weir.echo.Echo/ServerStream"
load "TLS unary 16x32" -c 16 -m 32 -n $((calls / 4)) -d "$work/small.bin" "https://127.0.0.1:$fetls/weir.echo.Echo/Unary"
load "mode tcp 16x32" -c 16 -m 32 -n $((calls / 4)) -d "$work/small.bin" "http://127.0.0.1:$fe4/weir.echo.Echo/Unary"
kill -TERM "$weir"
wait "$weir" || { echo "weir exited with an error; its log:" >&2; cat "$work/weir.log" >&2; exit 1; }
ls "$data"/raw/*.profraw >/dev/null 2>&1 || { echo "no profile was written" >&2; exit 1; }
"$profdata" merge -o "$data/merged.profdata" "$data"/raw/*.profraw
# The profile's hash in its name: cargo rebuilds when RUSTFLAGS change, not
# when the file behind an unchanged flag does.
sum=$(sha256sum "$data/merged.profdata" | cut -c1-12)
mv "$data/merged.profdata" "$data/weir-$sum.profdata"
RUSTFLAGS="-Cprofile-use=$data/weir-$sum.profdata" \
    cargo build --release --quiet -p weir --target "$host" --target-dir target/pgo
echo "PGO build: target/pgo/$host/release/weir"
