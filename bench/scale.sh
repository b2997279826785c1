#!/usr/bin/env bash
# Multi-core scaling: weir and HAProxy with 1, 2, 4, 8 threads, side by side
# (docs/benchmarks.md, "Multi-core scaling").
#
#   bench/scale.sh [--threads 1,2,4,8] [--reps N] [--duration S] [--wait-quiet S]
#                  [--shared] [--no-build] [--out FILE]
#
# For each thread count N the harness runs scenario (scale) (as (a), over 64
# client connections) against direct, weir and haproxy, both proxies with
# `nbthread N`:
#   - the proxy on CPUs 0..N-1 (taskset), h2load and the two backends on CPUs
#     N..P-1 (P = the CPUs this process may use), h2load with one thread per
#     two of those CPUs;
#   - a thread count that leaves no CPU for the load is skipped, unless
#     --shared: then every process runs on all CPUs. That is a weak
#     measurement (the load takes CPU from the proxy), for machines too small
#     for the real one; the table says which layout each row used.
# One report per thread count (FILE stem + "-tN.md" and ".jsonl"), then one
# table over all of them in FILE (default bench/results/scale.md).
set -euo pipefail
cd "$(dirname "$0")/.."

threads="1,2,4,8"
out="bench/results/scale.md"
shared=0
build=1
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift ;;
        --out) out="$2"; shift ;;
        --shared) shared=1 ;;
        --no-build) build=0 ;;
        --reps|--duration|--wait-quiet|--warmup) pass+=("$1" "$2"); shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "bench/scale.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# The CPUs this process may use, in order (taskset lists them for the harness).
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(str(c) for c in sorted(os.sched_getaffinity(0))))')
ncpu=${#cpus[@]}
join() { local IFS=,; echo "$*"; }

stem="${out%.md}"
reports=()
first=1
for n in ${threads//,/ }; do
    case "$n" in ''|*[!0-9]*) echo "bench/scale.sh: --threads takes numbers, got '$n'" >&2; exit 2 ;; esac
    [ "$n" -ge 1 ] || { echo "bench/scale.sh: thread counts start at 1" >&2; exit 2; }
    if [ "$n" -lt "$ncpu" ]; then
        proxy_cpus=$(join "${cpus[@]:0:$n}")
        load_cpus=$(join "${cpus[@]:$n}")
        h2t=$(( (ncpu - n) / 2 ))
        layout=split
    elif [ "$shared" = 1 ]; then
        proxy_cpus=$(join "${cpus[@]}")
        load_cpus=$proxy_cpus
        h2t=$(( ncpu / 2 ))
        layout=shared
    else
        echo "== skipping $n thread(s): $ncpu CPUs leave none for the load (--shared runs it anyway)" >&2
        continue
    fi
    [ "$h2t" -ge 1 ] || h2t=1
    echo "== $n thread(s): proxy on CPUs $proxy_cpus, h2load (-t $h2t) and backends on $load_cpus ($layout)" >&2
    build_arg=(--no-build)
    [ "$build" = 1 ] && [ "$first" = 1 ] && build_arg=()
    first=0
    PROXY_THREADS=$n PROXY_CPUS=$proxy_cpus LOAD_CPUS=$load_cpus BACKEND_CPUS=$load_cpus \
        H2LOAD_THREADS=$h2t bench/run.sh "${build_arg[@]}" --scenarios scale \
        --out "$stem-t$n.md" "${pass[@]}"
    reports+=("$stem-t$n.jsonl")
done
[ ${#reports[@]} -gt 0 ] || { echo "bench/scale.sh: no thread count could run here" >&2; exit 1; }
python3 bench/scale_table.py --out "$out" "${reports[@]}"
echo "== table: $out" >&2
