#!/usr/bin/env python3
"""Side-by-side benchmark of weir, HAProxy and nginx (issue #10).

Run it through bench/run.sh, which installs the tools and builds the binaries
first; docs/benchmarks.md explains the method and how to read the output.

    harness.py --bin-dir target/release [--quick] [--reps N]
               [--scenarios a,lat,rate,b,c,d,e,l4,policy,observe] [--out bench/results/latest.md]

WEIR_B_BIN=/path/to/weir adds a target "weir-b": that binary with weir's
config, next to "weir" in every scenario that has weir (before/after runs),
and "weir-b-splice" next to "weir-splice". WEIR_B_GLOBAL="line; line" adds
`global` lines to weir-b's config (A/B of a tuning keyword), WEIR_B_DEFAULTS
the same to its `defaults` section.

Every process this script starts is kept by PID and only those are stopped
(SIGTERM, then SIGKILL after 5 s). All traffic stays on 127.0.0.1. Every loop
is bounded in count and time.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIGS = os.path.join(HERE, "configs")
sys.dont_write_bytecode = True  # no bench/__pycache__ in the working tree
sys.path.insert(0, HERE)
import grpc_body  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024

UNARY = "/weir.echo.Echo/Unary"
SERVER_STREAM = "/weir.echo.Echo/ServerStream"

# ---------------------------------------------------------------- scenarios
#
# kind: "unary"  -> throughput table (calls/s primary)
#       "lat"    -> one call at a time (p50 primary, lower is better)
#       "rate"   -> a fixed offered rate (h2load --rps): latency at the same
#                   load for every target (p99 primary, lower is better)
#       "large"  -> MiB/s primary
#       "stream" -> MiB/s primary, latency is whole-stream time (not shown)
#       "idle"   -> idle connections, RSS per connection
# optional: config (template for weir and haproxy instead of the mode's),
#           headers (extra request headers for h2load and the preflight call),
#           logs (the preflight call must send a log datagram to @@LOGPORT@@),
#           log_json (... and that datagram must be one JSON object),
#           scrape (a path on the proxy's @@STATSPORT@@: fetched once by the
#                   preflight and once per second during each measured run;
#                   every fetch must answer HTTP 200)
SCENARIOS = {
    "a": dict(
        title="(a) small unary calls, many in flight",
        kind="unary", mode="http", path=UNARY, payload=64,
        c=16, m=32, targets=["direct", "weir", "haproxy", "nginx"],
        what="Unary, 64-byte payload echoed, h2load -c 16 -m 32 (512 calls in flight).",
    ),
    "lat": dict(
        title="(lat) one call at a time",
        kind="lat", mode="http", path=UNARY, payload=64,
        c=1, m=1, targets=["direct", "weir", "haproxy", "nginx"],
        what="Unary, 64-byte payload, h2load -c 1 -m 1: latency of a lone call.",
    ),
    "latbusy": dict(
        title="(latbusy) one call at a time, with and without busy-polling",
        kind="lat", mode="http", path=UNARY, payload=64,
        c=1, m=1, targets=["direct", "weir", "weir-busy", "haproxy", "haproxy-busy"],
        isolate=True, bases=["direct", "haproxy", "haproxy-busy"],
        what="As (lat); `weir-busy` and `haproxy-busy` add `busy-polling` to `global` (the "
             "proxy's thread never sleeps in its poller and uses its whole CPU). A spinning "
             "proxy would take CPU 0 from the others, so here each proxy runs alone: started "
             "before its own run (and warm-up), stopped after it. CPU per call is not "
             "comparable between busy and non-busy targets.",
    ),
    "rate": dict(
        title="(rate) small unary calls at a fixed rate: latency at the same load",
        kind="rate", mode="http", path=UNARY, payload=64,
        c=16, m=32, rps=625, targets=["direct", "weir", "haproxy", "nginx"],
        what="As (a), but h2load offers a fixed 10,000 calls/s (16 clients × `--rps 625`), "
             "under every proxy's saturation point in (a) except nginx's, so latency and CPU "
             "per call compare at the same load rather than at each target's own maximum. "
             "h2load's rate mode starts each client's calls in bursts on a timer, so even "
             "direct latency is milliseconds; the ratios are what compare.",
    ),
    "b64k": dict(
        title="(b) large messages: 64 KiB unary",
        kind="large", mode="http", path=UNARY, payload=64 * 1024,
        c=8, m=4, targets=["direct", "weir", "haproxy", "nginx"],
        what="Unary, 64 KiB payload each way (echo), h2load -c 8 -m 4.",
    ),
    "b1m": dict(
        title="(b) large messages: 1 MiB unary",
        kind="large", mode="http", path=UNARY, payload=1024 * 1024,
        c=4, m=2, targets=["direct", "weir", "haproxy", "nginx"],
        what="Unary, 1 MiB payload each way (echo), h2load -c 4 -m 2.",
    ),
    "c": dict(
        title="(c) long server streams",
        kind="stream", mode="http", path=SERVER_STREAM, payload=0,
        reply_count=10000, reply_size=1024,
        c=4, m=4, targets=["direct", "weir", "haproxy", "nginx"],
        what="ServerStream, each call = 10,000 replies of 1 KiB (about 10.5 MB), "
             "h2load -c 4 -m 4 (16 streams at once).",
    ),
    "l4": dict(
        title="(l4) L4 / mode tcp, small unary calls",
        kind="unary", mode="tcp", path=UNARY, payload=64,
        c=16, m=32, targets=["direct", "weir", "haproxy", "nginx"],
        what="As (a), but the proxies only copy bytes: weir and haproxy `mode tcp`, "
             "nginx `stream {}`. 16 client connections, spread per connection.",
    ),
    "l4s": dict(
        title="(l4s) L4 / mode tcp, small unary calls, with and without splice",
        kind="unary", mode="tcp", path=UNARY, payload=64,
        c=16, m=32, targets=["direct", "weir", "weir-splice", "haproxy", "haproxy-splice"],
        what="As (l4); `weir-splice` and `haproxy-splice` read bench/configs/proxy-tcp-splice.cfg "
             "(proxy-tcp.cfg plus `option splice-auto`).",
    ),
    "l4b": dict(
        title="(l4b) L4 / mode tcp, 1 MiB messages, with and without splice",
        kind="large", mode="tcp", path=UNARY, payload=1024 * 1024,
        c=4, m=2, targets=["direct", "weir", "weir-splice", "haproxy", "haproxy-splice", "nginx"],
        what="As (b) 1 MiB, but through `mode tcp` / nginx `stream {}`; `weir-splice` and "
             "`haproxy-splice` read bench/configs/proxy-tcp-splice.cfg (`option splice-auto`).",
    ),
    "scale": dict(
        title="(scale) small unary calls over 64 connections, for bench/scale.sh",
        kind="unary", mode="http", path=UNARY, payload=64,
        c=64, m=8, targets=["direct", "weir", "haproxy"],
        what="As (a) with 512 calls in flight over 64 client connections (h2load -c 64 -m 8), so "
             "that every proxy thread gets connections (weir: one SO_REUSEPORT listener per "
             "thread). bench/scale.sh runs it at nbthread 1, 2, 4, 8: the proxy on CPUs 0..N-1, "
             "h2load and the backends on the others.",
    ),
    "e": dict(
        title="(e) small unary calls, TLS on the frontend",
        kind="unary", mode="tls", path=UNARY, payload=64,
        c=16, m=32, targets=["weir", "haproxy", "nginx"],
        what="As (a) over TLS 1.3 (ECDSA P-256, ALPN h2) to the proxy; backends stay h2c.",
    ),
    "policy": dict(
        title="(policy) small unary calls through ACLs, use_backend rules, deny and httplog",
        kind="unary", mode="http", path=UNARY, payload=64,
        c=16, m=32, targets=["direct", "weir", "haproxy"],
        config="proxy-policy.cfg", headers=["mysecretpassphrase: abc123"], logs=True,
        what="As (a), through bench/configs/proxy-policy.cfg: http-request deny unless a "
             "header matches, three path ACLs (the call's path is the third use_backend rule), "
             "a captured header and `option httplog`, one UDP datagram per call to 127.0.0.1.",
    ),
    "observe": dict(
        title="(observe) small unary calls with JSON access logs and a metrics scrape",
        kind="unary", mode="http", path=UNARY, payload=64,
        c=16, m=32, targets=["direct", "weir"],
        config="proxy-observe.cfg", logs=True, log_json=True, scrape="/metrics",
        what="As (a), through bench/configs/proxy-observe.cfg (weir only: `option log-json` "
             "is weir's): proxy-http.cfg plus `option httplog` + `option log-json`, one JSON "
             "UDP datagram per call to 127.0.0.1, and a second frontend serving the Prometheus "
             "exporter (`/metrics`) and `stats uri /stats`. While each measured run lasts, the "
             "harness fetches http://127.0.0.1:STATSPORT/metrics once per second (urllib, 2 s "
             "timeout); the run fails unless every fetch answers HTTP 200.",
    ),
    "d": dict(
        title="(d) idle HTTP/2 client connections",
        kind="idle", mode="http", path=UNARY, payload=64,
        targets=["weir", "haproxy", "nginx"],
        what="N client connections that send the preface + SETTINGS, ack the proxy's "
             "SETTINGS and then stay idle (bench/idle_conns.py); each proxy is started "
             "fresh, one call is made through it, then RSS is read before and while the "
             "connections are held.",
    ),
}
DEFAULT_ORDER = ["a", "lat", "rate", "b64k", "b1m", "c", "l4", "l4b", "e", "d", "policy", "observe"]
ALIASES = {"b": ["b64k", "b1m"], "splice": ["l4s", "l4b"], "all": DEFAULT_ORDER + ["l4s", "latbusy"]}


# ------------------------------------------------------------ process care

class Procs:
    """Every process started here, by PID; stop() ends only those (and the
    children they forked, e.g. nginx workers, if they outlive their parent)."""

    def __init__(self):
        self.procs = []  # (name, Popen)
        self.children = {}  # parent pid -> child pids seen (nginx workers)

    def start(self, name, argv, cpus, log_path, stdin=None, stdout=None):
        if cpus:
            argv = ["taskset", "-c", cpus] + argv
        log = open(log_path, "ab")
        p = subprocess.Popen(
            argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else log, stderr=log,
        )
        log.close()
        self.procs.append((name, p))
        return p

    def note_children(self, parent, pids):
        self.children.setdefault(parent, set()).update(pids)

    def stop(self, p, grace=5.0):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self.procs = [(n, q) for (n, q) in self.procs if q is not p]
        kids = self.children.pop(p.pid, set())
        deadline = time.monotonic() + 2.0
        while any(pid_alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for k in kids:
            if pid_alive(k):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop_all(self):
        for _, p in reversed(list(self.procs)):
            self.stop(p)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def children_of(pid):
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (FileNotFoundError, OSError):
        pass
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except (FileNotFoundError, OSError, IndexError):
                pass
    return out


def cpu_ticks(pids):
    return sum(cpu_ticks_split(pids))


def cpu_ticks_split(pids):
    """(utime, stime) summed over pids, in clock ticks."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (FileNotFoundError, OSError):
            pass
    return user, system


def status_kib(pids, key):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except (FileNotFoundError, OSError):
            pass
    return total


def proc_stat():
    """{"cpu": (busy, steal, total), "cpu0": ..., ...} in clock ticks."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                parts = line.split()
                v = [int(x) for x in parts[1:9]] + [0] * max(0, 8 - len(parts[1:9]))
                user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
                busy = user + nice + system + irq + softirq
                out[parts[0]] = (busy, steal, busy + steal + idle + iowait)
    except OSError:
        pass
    return out


def own_cpu_s():
    import resource
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def reset_hwm(pids):
    ok = True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def parse_cpus(spec):
    """A taskset CPU list ("0", "0,2", "4-7") as a set of CPU numbers."""
    cpus = set()
    for part in str(spec).split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            cpus.update(range(int(a), int(b) + 1))
        elif part:
            cpus.add(int(part))
    return cpus


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def scrape_once(port, path, timeout=2.0):
    """GET http://127.0.0.1:port/path; returns (HTTP status or None, error text or None)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            r.read()
            return r.status, None if r.status == 200 else f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        return e.code, f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, str(getattr(e, "reason", e))


class Scraper:
    """A thread that fetches http://127.0.0.1:port/path once per second,
    for at most `duration` s (or until stop()), counting the answers."""

    def __init__(self, port, path, duration):
        self.port, self.path, self.duration = port, path, duration
        self.done = threading.Event()
        self.tried = self.ok = 0
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.monotonic()
        end = t0 + self.duration
        i = 0
        while i < 3600 and not self.done.is_set():
            nxt = t0 + i
            if nxt >= end:
                break
            if self.done.wait(max(0.0, nxt - time.monotonic())):
                break
            status, err = scrape_once(self.port, self.path, timeout=2.0)
            self.tried += 1
            if status == 200 and err is None:
                self.ok += 1
            elif len(self.errors) < 5:
                self.errors.append(err or f"HTTP {status}")
            i += 1

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.done.set()
        self.thread.join(timeout=10)


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""


def run_cmd(argv, timeout=10):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout)
        return (r.stdout + r.stderr).decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({e})"


# --------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.args = args
        self.procs = Procs()
        self.work = tempfile.mkdtemp(prefix="weir-bench-")
        self.proxy_cpus = os.environ.get("PROXY_CPUS", "0")
        self.load_cpus = os.environ.get("LOAD_CPUS", "1")
        self.backend_cpus = os.environ.get("BACKEND_CPUS", self.load_cpus)
        self.threads = int(os.environ.get("PROXY_THREADS", "1"))
        self.h2load_threads = int(os.environ.get("H2LOAD_THREADS", "1"))
        self.max_other = float(os.environ.get("BENCH_MAX_OTHER", "25"))
        self.max_steal = float(os.environ.get("BENCH_MAX_STEAL", "25"))
        self.retries = int(os.environ.get("BENCH_RETRIES", "0" if args.quick else "2"))
        self.idle_n = int(os.environ.get("IDLE_CONNS", "200" if args.quick else "10000"))
        # Connection caps well above any scenario's needs (nginx counts its
        # upstream connections too: one per call in flight).
        self.maxconn = max(self.idle_n, 10000) + 200
        self._check_cpus()
        soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
        self.nofile = hard if hard > 0 else 65536
        try:
            __import__("resource").setrlimit(__import__("resource").RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
        # WEIR_B_BIN: a second weir binary, target "weir-b" next to "weir".
        self.weir_b = os.path.abspath(os.environ["WEIR_B_BIN"]) if os.environ.get("WEIR_B_BIN") else None
        if self.weir_b:
            for scen in SCENARIOS.values():
                for a, b in (("weir", "weir-b"), ("weir-splice", "weir-b-splice")):
                    if a in scen["targets"] and b not in scen["targets"]:
                        i = scen["targets"].index(a)
                        scen["targets"] = scen["targets"][:i + 1] + [b] + scen["targets"][i + 1:]
        # WEIR_B_GLOBAL="line; line": extra `global` lines for weir-b's
        # config (A/B runs of a tuning keyword with WEIR_B_BIN = the same binary).
        self.weir_b_global = [l.strip() for l in os.environ.get("WEIR_B_GLOBAL", "").split(";") if l.strip()]
        # WEIR_B_DEFAULTS="line; line": the same for the `defaults` section
        # (e.g. "retry-on conn-failure").
        self.weir_b_defaults = [l.strip() for l in os.environ.get("WEIR_B_DEFAULTS", "").split(";") if l.strip()]
        # Log datagrams (scenarios policy and observe) go to this socket; it
        # is only read around preflight calls (drain_logs), the kernel drops
        # what does not fit its receive buffer.
        self.first_log = ""
        self.log_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.log_sock.bind(("127.0.0.1", 0))
        self.log_port = self.log_sock.getsockname()[1]
        self.records = []
        self.failures = []
        self.out_md = args.out
        self.out_jsonl = os.path.splitext(args.out)[0] + ".jsonl"
        os.makedirs(os.path.dirname(os.path.abspath(self.out_md)), exist_ok=True)
        self.jsonl = open(self.out_jsonl, "w")
        self.stream_module = "/usr/lib/nginx/modules/ngx_stream_module.so"

    def _check_cpus(self):
        have = sorted(os.sched_getaffinity(0))

        def ok(spec):
            cpus = parse_cpus(spec)
            return cpus and cpus <= set(have)

        for name in ("proxy_cpus", "load_cpus", "backend_cpus"):
            spec = getattr(self, name)
            if spec and not ok(spec):
                log(f"warning: {name.upper()}={spec} is not within the CPUs this process may use "
                    f"({have}); running unpinned")
                setattr(self, name, "")

    # ------------------------------------------------------------- output
    def emit(self, rec):
        self.records.append(rec)
        self.jsonl.write(json.dumps(rec, sort_keys=True) + "\n")
        self.jsonl.flush()

    # ------------------------------------------------------------ backends
    def start_backends(self):
        echo = os.path.join(self.args.bin_dir, "weir-echo")
        self.be_ports = []
        self.backend_procs = []
        for i in (1, 2):
            port = free_port()
            p = self.procs.start(
                f"echo{i}", [echo, "--listen", f"127.0.0.1:{port}", "--id", f"echo{i}"],
                self.backend_cpus, os.path.join(self.work, f"echo{i}.log"),
            )
            if not wait_port(port, p):
                raise SystemExit(f"weir-echo {i} did not start:\n" + tail(os.path.join(self.work, f"echo{i}.log")))
            self.be_ports.append(port)
            self.backend_procs.append(p)
        log(f"backends: weir-echo on 127.0.0.1:{self.be_ports[0]} and :{self.be_ports[1]} "
            f"(CPUs {self.backend_cpus or 'any'})")

    # -------------------------------------------------------------- proxies
    def render(self, template, dest, port, subdir, stats_port=None, extra_global=(), extra_defaults=()):
        with open(os.path.join(CONFIGS, template)) as f:
            text = f.read()
        for section, lines, env in (("global", extra_global, "WEIR_B_GLOBAL"),
                                    ("defaults", extra_defaults, "WEIR_B_DEFAULTS")):
            if lines:
                if f"\n{section}\n" not in text:
                    raise SystemExit(f"{template} has no {section} section for {env}")
                text = text.replace(f"\n{section}\n", f"\n{section}\n" + "".join(f"    {l}\n" for l in lines), 1)
        values = {
            "THREADS": str(self.threads), "MAXCONN": str(self.maxconn), "NOFILE": str(self.nofile),
            # nginx closes idle keep-alive connections when free connection
            # slots run low ("worker_connections are not enough, reusing
            # connections"): give it the whole descriptor limit.
            "NGINX_CONNS": str(max(self.maxconn, self.nofile)),
            "PORT": str(port), "BE1": str(self.be_ports[0]), "BE2": str(self.be_ports[1]),
            "DIR": subdir, "CERT": self.cert, "KEY": self.key, "CERT_PEM": self.cert_pem,
            "STREAM_MODULE": self.stream_module, "LOGPORT": str(self.log_port),
        }
        if stats_port is not None:
            values["STATSPORT"] = str(stats_port)
        for k, v in values.items():
            text = text.replace(f"@@{k}@@", v)
        if re.search(r"@@[A-Z_]+@@", text):
            raise SystemExit(f"unfilled placeholder in {template}")
        with open(dest, "w") as f:
            f.write(text)
        return dest

    def start_proxy(self, target, mode, config=None):
        """Start one proxy; returns dict(target, port, proc, pids(), log) or an error string.
        config: template for weir and haproxy instead of the mode's."""
        port = free_port()
        stats_port = free_port()  # @@STATSPORT@@ (scenario observe's metrics frontend)
        sub = os.path.join(self.work, f"{target}-{mode}-{port}")
        os.makedirs(sub)
        logf = os.path.join(sub, "stderr.log")
        # "<proxy>-splice": mode tcp with `option splice-auto`;
        # "<proxy>-busy": `busy-polling` in global.
        base, extra = target, []
        if base.endswith("-splice"):
            base = base[:-len("-splice")]
            config = "proxy-tcp-splice.cfg"
        if base.endswith("-busy"):
            base = base[:-len("-busy")]
            extra.append("busy-polling")
        if base in ("weir", "weir-b"):
            tmpl = config or {"http": "proxy-http.cfg", "tcp": "proxy-tcp.cfg", "tls": "proxy-tls.cfg"}[mode]
            cfg = self.render(tmpl, os.path.join(sub, "weir.cfg"), port, sub, stats_port,
                              (list(self.weir_b_global) if base == "weir-b" else []) + extra,
                              self.weir_b_defaults if base == "weir-b" else ())
            argv = [os.path.join(self.args.bin_dir, base), "-f", cfg]
        elif base == "haproxy":
            tmpl = config or {"http": "proxy-http.cfg", "tcp": "proxy-tcp.cfg", "tls": "proxy-tls.cfg"}[mode]
            cfg = self.render(tmpl, os.path.join(sub, "haproxy.cfg"), port, sub, stats_port, extra)
            # haproxy-extra.cfg: "no strict-limits" (see the file).
            argv = ["haproxy", "-db", "-f", cfg, "-f", os.path.join(CONFIGS, "haproxy-extra.cfg")]
            # HAPROXY_EXTRA_CFG=file: one more config file, e.g. tune.* settings.
            if os.environ.get("HAPROXY_EXTRA_CFG"):
                argv += ["-f", os.path.abspath(os.environ["HAPROXY_EXTRA_CFG"])]
        elif target == "nginx":
            tmpl = {"http": "nginx-http.conf", "tcp": "nginx-tcp.conf", "tls": "nginx-tls.conf"}[mode]
            cfg = self.render(tmpl, os.path.join(sub, "nginx.conf"), port, sub)
            os.makedirs(os.path.join(sub, "logs"), exist_ok=True)
            argv = ["nginx", "-p", sub + "/", "-e", os.path.join(sub, "error.log"), "-c", cfg]
        else:
            raise ValueError(target)
        p = self.procs.start(target, argv, self.proxy_cpus, logf)
        if not wait_port(port, p):
            err = tail(logf) + "\n" + tail(os.path.join(sub, "error.log"))
            self.procs.stop(p)
            return f"{target} ({mode}) did not start: {err.strip()}"
        px = dict(target=target, mode=mode, port=port, stats_port=stats_port, proc=p, log=logf, dir=sub)
        if target == "nginx":
            time.sleep(0.2)  # let the master fork its workers
        return px

    def proxy_pids(self, px):
        if px is None:
            return []
        pid = px["proc"].pid
        pids = [pid]
        if px["target"] == "nginx":
            kids = children_of(pid)
            self.procs.note_children(pid, kids)
            pids += kids
        return pids

    # ----------------------------------------------------------------- load
    def url(self, scen, port):
        scheme = "https" if scen["mode"] == "tls" else "http"
        return f"{scheme}://127.0.0.1:{port}{scen['path']}"

    def body_file(self, scen):
        name = f"body-{scen['payload']}-{scen.get('reply_count', 0)}-{scen.get('reply_size', 0)}.bin"
        path = os.path.join(self.work, name)
        if not os.path.exists(path):
            data = grpc_body.grpc_frame(grpc_body.echo_request(
                scen["payload"], scen.get("reply_count", 0), scen.get("reply_size", 0)))
            with open(path, "wb") as f:
                f.write(data)
        return path

    def preflight(self, scen, port, stats_port=None):
        """One real call with nghttp; h2load cannot see trailers, nghttp can.
        stats_port: with a scenario's `scrape`, the proxy's metrics port."""
        argv = ["nghttp", "-n", "-v", "-d", self.body_file(scen),
                "-H", "content-type: application/grpc", "-H", "te: trailers"]
        for h in scen.get("headers", []):
            argv += ["-H", h]
        argv.append(self.url(scen, port))
        if self.load_cpus:
            argv = ["taskset", "-c", self.load_cpus] + argv
        if scen.get("logs"):
            self.drain_logs(0)
        out = run_cmd(argv, timeout=30)
        status = re.search(r":status: (\d+)", out)
        grpc = re.search(r"grpc-status: (\d+)", out)
        if status and status.group(1) == "200" and grpc and grpc.group(1) == "0":
            if scen.get("logs") and port != self.direct_port:
                if not self.drain_logs(2.0):
                    return "preflight call answered but no log datagram arrived"
                if scen.get("log_json"):
                    try:
                        if not isinstance(json.loads(self.first_log), dict):
                            raise ValueError("not a JSON object")
                    except ValueError as e:
                        return f"log datagram is not one JSON object ({e}): {self.first_log[:120]!r}"
            if scen.get("scrape") and port != self.direct_port:
                status, err = scrape_once(stats_port, scen["scrape"])
                if err:
                    return f"preflight GET {scen['scrape']} on :{stats_port} failed: {err}"
            return None
        msg = re.search(r"grpc-message: (.*)", out)
        return (f"preflight call failed: :status {status.group(1) if status else '?'}, "
                f"grpc-status {grpc.group(1) if grpc else 'missing'}"
                + (f", grpc-message {msg.group(1)}" if msg else ""))

    def drain_logs(self, wait):
        """Read what is queued on the log socket (waiting at most `wait` s
        for the first datagram); returns how many datagrams were read."""
        import select
        n = 0
        deadline = time.monotonic() + wait
        while n < 100000:
            timeout = max(0.0, deadline - time.monotonic()) if n == 0 else 0.0
            if not select.select([self.log_sock], [], [], timeout)[0]:
                break
            data = self.log_sock.recv(65536)
            if n == 0:
                self.first_log = data.decode(errors="replace")
            n += 1
        return n

    def h2load(self, scen, port, duration, log_file):
        argv = ["h2load", "-t", str(self.h2load_threads), "-c", str(scen["c"]), "-m", str(scen["m"]),
                "-D", f"{int(round(duration * 1000))}ms", "-d", self.body_file(scen),
                "-H", "content-type: application/grpc", "-H", "te: trailers"]
        for h in scen.get("headers", []):
            argv += ["-H", h]
        if scen.get("rps"):
            argv += ["--rps", str(scen["rps"])]
        if log_file:
            argv += ["--log-file", log_file]
        argv.append(self.url(scen, port))
        if self.load_cpus:
            argv = ["taskset", "-c", self.load_cpus] + argv
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, capture_output=True, timeout=duration + 60)
            out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired:
            out = "h2load timed out"
        wall = time.monotonic() - t0
        return argv, out, wall

    @staticmethod
    def parse_h2load(out):
        res = {}
        m = re.search(r"finished in ([\d.]+)(ms|s|us),\s*([\d.]+) req/s", out)
        if m:
            v = float(m.group(1))
            res["duration_s"] = v / 1000 if m.group(2) == "ms" else v / 1e6 if m.group(2) == "us" else v
            res["h2load_rps"] = float(m.group(3))
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        if m:
            for k, v in zip(["total", "started", "done", "succeeded", "failed", "errored", "timeout"],
                            m.groups()):
                res[k] = int(v)
        m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if m:
            res["s2xx"], res["s3xx"], res["s4xx"], res["s5xx"] = map(int, m.groups())
        m = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers.*?\((\d+)\) data", out)
        if m:
            res["bytes_total"], res["bytes_headers"], res["bytes_data"] = map(int, m.groups())
        return res

    @staticmethod
    def latencies(log_file):
        vals = []
        try:
            with open(log_file) as f:
                for line in f:
                    parts = line.split("\t")
                    if len(parts) >= 3 and parts[1] == "200":
                        vals.append(int(parts[2]))
        except OSError:
            pass
        vals.sort()
        if not vals:
            return {}

        def pct(p):
            return vals[min(len(vals) - 1, max(0, int(round(p / 100.0 * len(vals) + 0.5)) - 1))]

        return {"p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99),
                "mean_us": sum(vals) / len(vals), "max_us": vals[-1], "latency_n": len(vals)}

    def measure(self, sid, scen, target, px, rep, order, duration):
        port = self.direct_port if target == "direct" else px["port"]
        pids = self.proxy_pids(px)
        hwm_reset = reset_hwm(pids)
        be_pids = [p.pid for p in self.backend_procs]
        st0, own0, be0 = proc_stat(), own_cpu_s(), cpu_ticks(be_pids)
        u0, k0 = cpu_ticks_split(pids)
        logf = os.path.join(self.work, f"h2load-{sid}-{target}-{rep}.tsv")
        scraper = None
        if scen.get("scrape") and px is not None:
            scraper = Scraper(px["stats_port"], scen["scrape"], duration).start()
        try:
            argv, out, wall = self.h2load(scen, port, duration, logf)
        finally:
            if scraper is not None:
                scraper.stop()
        u1, k1 = cpu_ticks_split(pids)
        cpu0, cpu1 = u0 + k0, u1 + k1
        st1, own1, be1 = proc_stat(), own_cpu_s(), cpu_ticks(be_pids)
        rec = dict(kind="run", scenario=sid, target=target, rep=rep, order=order, wall_s=round(wall, 3),
                   cmd=" ".join(argv), ts=datetime.datetime.now().isoformat(timespec="seconds"))
        rec.update(self.parse_h2load(out))
        rec.update(self.latencies(logf))
        try:
            os.unlink(logf)
        except OSError:
            pass
        ok_calls = rec.get("succeeded", 0)
        # Where the CPU went: busy % per CPU, and CPU used by processes that
        # are not part of this benchmark (other jobs on a shared machine).
        for cpu in sorted(st1):
            if cpu in st0 and cpu != "cpu":
                d_total = st1[cpu][2] - st0[cpu][2]
                if d_total > 0:
                    rec[f"busy_pct_{cpu}"] = round(100.0 * (st1[cpu][0] - st0[cpu][0]) / d_total, 1)
        if "cpu" in st0 and "cpu" in st1 and wall:
            busy_s = (st1["cpu"][0] - st0["cpu"][0]) / CLK_TCK
            ours = (cpu1 - cpu0 + be1 - be0) / CLK_TCK + (own1 - own0)
            rec["backend_cpu_s"] = (be1 - be0) / CLK_TCK
            rec["h2load_and_harness_cpu_s"] = round(own1 - own0, 3)
            rec["other_cpu_pct"] = round(100.0 * max(0.0, busy_s - ours) / wall, 1)
            rec["steal_pct"] = round(100.0 * (st1["cpu"][1] - st0["cpu"][1]) / CLK_TCK / wall, 1)
        dur = rec.get("duration_s") or duration
        rec["rps"] = ok_calls / dur if dur else 0.0
        rec["mib_s"] = rec.get("bytes_data", 0) / MiB / dur if dur else 0.0
        if pids:
            cpu_s = (cpu1 - cpu0) / CLK_TCK
            rec["proxy_pids"] = pids
            rec["proxy_cpu_s"] = cpu_s
            rec["cpu_pct"] = 100.0 * cpu_s / wall if wall else None
            rec["cpu_us_per_call"] = cpu_s * 1e6 / ok_calls if ok_calls else None
            # user/kernel split (the kernel part is mostly socket I/O)
            rec["proxy_user_s"] = (u1 - u0) / CLK_TCK
            rec["proxy_sys_s"] = (k1 - k0) / CLK_TCK
            data_mib = rec.get("bytes_data", 0) / MiB
            rec["cpu_us_per_mib"] = cpu_s * 1e6 / data_mib if data_mib else None
            rec["peak_rss_kib"] = status_kib(pids, "VmHWM")
            rec["peak_rss_scope"] = "run" if hwm_reset else "process lifetime"
        # h2load's `failed` already counts `errored` (network-level failures,
        # of which `timeout` is a part) and 4xx/5xx answers; 3xx it counts as
        # succeeded, but no gRPC call should get one.
        rec["errors"] = rec.get("failed", 0) + rec.get("s3xx", 0)
        rec["ok"] = ok_calls > 0 and rec["errors"] == 0 and "s2xx" in rec
        if not rec["ok"]:
            rec["h2load_tail"] = "\n".join(out.strip().splitlines()[-12:])
        if scraper is not None:
            rec["scrapes"] = scraper.tried
            rec["scrapes_200"] = scraper.ok
            if scraper.errors:
                rec["scrape_errors"] = scraper.errors
            if scraper.tried == 0 or scraper.ok != scraper.tried:
                rec["ok"] = False
        show = (f"  {sid:5} rep {rep} {target:8} calls/s {rec['rps']:>9.0f}  MiB/s {rec['mib_s']:>8.1f}"
                f"  p50 {rec.get('p50_us', 0):>7}us p99 {rec.get('p99_us', 0):>7}us")
        if pids:
            cpc = rec["cpu_us_per_call"]
            show += f"  cpu/call {cpc:.1f}us" if cpc is not None else "  cpu/call -"
            show += f"  cpu {rec['cpu_pct']:.0f}%  hwm {rec['peak_rss_kib'] / 1024:.1f}MiB"
        busy = " ".join(f"{k[9:]}:{v:.0f}%" for k, v in rec.items() if k.startswith("busy_pct_cpu"))
        show += f"  busy {busy}  other {rec.get('other_cpu_pct', 0):.0f}%  steal {rec.get('steal_pct', 0):.0f}%"
        if scraper is not None:
            show += f"  scrapes {scraper.ok}/{scraper.tried} HTTP 200"
        if not rec["ok"]:
            show += f"  FAILED ({rec['errors']} errors, {ok_calls} ok"
            if scraper is not None and (scraper.ok != scraper.tried or not scraper.tried):
                show += f", scrapes {scraper.ok}/{scraper.tried} HTTP 200: {'; '.join(scraper.errors) or 'none made'}"
            show += ")"
        log(show)
        return rec

    def measure_clean(self, sid, scen, target, px, rep, order, duration):
        """measure(), repeated (at most BENCH_RETRIES more times) while other
        jobs on the machine used more than BENCH_MAX_OTHER % of a CPU during
        the run. Every attempt goes to the JSONL; only the last one counts."""
        for attempt in range(self.retries + 1):
            rec = self.measure(sid, scen, target, px, rep, order, duration)
            rec["attempt"] = attempt
            noisy = (rec.get("other_cpu_pct", 0) > self.max_other
                     or rec.get("steal_pct", 0) > self.max_steal)
            last = attempt == self.retries or not noisy
            rec["discarded"] = not last
            rec["noisy"] = noisy
            self.emit(rec)
            if last:
                break
            log(f"        (other jobs {rec.get('other_cpu_pct', 0):.0f}%, steal {rec.get('steal_pct', 0):.0f}% "
                f"of a CPU: measuring again)")
            time.sleep(1.0)
        if not rec["ok"]:
            self.failures.append(f"{sid}/{target} rep {rep}: {rec.get('succeeded', 0)} ok, {rec['errors']} errors"
                                 + (f", {rec['scrapes_200']}/{rec['scrapes']} {scen['scrape']} scrapes HTTP 200"
                                    if "scrapes" in rec else ""))
        return rec

    # ------------------------------------------------------------ scenarios
    def target_unavailable(self, sid, target, reason, unavailable):
        """A target that could not start or failed its preflight call: left
        out of the scenario, recorded, and counted as a failure."""
        unavailable[target] = reason
        self.failures.append(f"{sid}/{target}: {reason}")
        self.emit(dict(kind="unavailable", scenario=sid, target=target, reason=reason))
        log(f"  {target}: {reason}")

    def run_h2load_scenario(self, sid, scen):
        if scen.get("isolate"):
            return self.run_isolated_scenario(sid, scen)
        duration = self.args.duration
        reps = self.args.reps
        proxies = {}
        unavailable = {}
        for t in scen["targets"]:
            if t == "direct":
                continue
            px = self.start_proxy(t, scen["mode"], scen.get("config"))
            if isinstance(px, str):
                self.target_unavailable(sid, t, px, unavailable)
            else:
                proxies[t] = px
        try:
            active = []
            for t in scen["targets"]:
                if t in unavailable:
                    continue
                port = self.direct_port if t == "direct" else proxies[t]["port"]
                err = self.preflight(scen, port, None if t == "direct" else proxies[t]["stats_port"])
                if err:
                    self.target_unavailable(sid, t, err, unavailable)
                    continue
                active.append(t)
            # Warm-up (not recorded): connections, pools, caches, allocator.
            if self.args.warmup > 0:
                for t in active:
                    port = self.direct_port if t == "direct" else proxies[t]["port"]
                    self.h2load(scen, port, self.args.warmup, None)
            for rep in range(reps):
                k = rep % len(active) if active else 0
                order = active[k:] + active[:k]  # rotate: no target always goes first
                for i, t in enumerate(order):
                    self.measure_clean(sid, scen, t, proxies.get(t), rep, i, duration)
                    time.sleep(0.2)
        finally:
            for px in proxies.values():
                self.procs.stop(px["proc"])
        return unavailable

    def run_isolated_scenario(self, sid, scen):
        """As run_h2load_scenario, but each proxy runs alone: started (and
        checked, warmed up) right before each of its runs, stopped after."""
        unavailable = {}
        for rep in range(self.args.reps):
            active = [t for t in scen["targets"] if t not in unavailable]
            k = rep % len(active) if active else 0
            for i, t in enumerate(active[k:] + active[:k]):
                px = None
                if t != "direct":
                    px = self.start_proxy(t, scen["mode"], scen.get("config"))
                    if isinstance(px, str):
                        self.target_unavailable(sid, t, px, unavailable)
                        continue
                try:
                    port = self.direct_port if px is None else px["port"]
                    err = self.preflight(scen, port, None if px is None else px["stats_port"])
                    if err:
                        self.target_unavailable(sid, t, err, unavailable)
                        continue
                    if self.args.warmup > 0:
                        self.h2load(scen, port, self.args.warmup, None)
                    self.measure_clean(sid, scen, t, px, rep, i, self.args.duration)
                finally:
                    if px is not None:
                        self.procs.stop(px["proc"])
                time.sleep(0.2)
        return unavailable

    def run_idle_scenario(self, sid, scen):
        reps = self.args.reps
        n = self.idle_n
        unavailable = {}
        targets = list(scen["targets"])
        for rep in range(reps):
            k = rep % len(targets)
            order = targets[k:] + targets[:k]
            for i, t in enumerate(order):
                if t in unavailable:
                    continue
                px = self.start_proxy(t, "http")
                if isinstance(px, str):
                    unavailable[t] = px
                    self.failures.append(f"{sid}/{t}: {px}")
                    self.emit(dict(kind="unavailable", scenario=sid, target=t, reason=px))
                    continue
                client = None
                try:
                    err = self.preflight(scen, px["port"], px["stats_port"])
                    if err:
                        unavailable[t] = err
                        self.failures.append(f"{sid}/{t}: {err}")
                        self.emit(dict(kind="unavailable", scenario=sid, target=t, reason=err))
                        continue
                    time.sleep(0.3)
                    pids = self.proxy_pids(px)
                    rss0 = status_kib(pids, "VmRSS")
                    cpu0 = cpu_ticks(pids)
                    t0 = time.monotonic()
                    client = self.procs.start(
                        "idle_conns",
                        [sys.executable, os.path.join(HERE, "idle_conns.py"), "127.0.0.1", str(px["port"]),
                         str(n), "--hold", "60"],
                        self.load_cpus, os.path.join(self.work, "idle_conns.log"),
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    )
                    ready = read_line(client, 150)
                    open_s = time.monotonic() - t0
                    time.sleep(1.0)  # let the proxy settle
                    pids = self.proxy_pids(px)
                    rss1 = status_kib(pids, "VmRSS")
                    hwm1 = status_kib(pids, "VmHWM")
                    cpu1 = cpu_ticks(pids)
                    done = ""
                    try:
                        client.stdin.write(b"report\n")
                        client.stdin.flush()
                        done = read_line(client, 30)
                    except (BrokenPipeError, OSError):
                        pass
                    kv = dict(re.findall(r"(\w+)=([\d.]+)", ready + " " + done))
                    held = int(kv.get("handshaken", 0))
                    alive = int(kv.get("alive", 0))
                    rec = dict(kind="run", scenario=sid, target=t, rep=rep, order=i, conns_wanted=n,
                               conns_opened=int(kv.get("opened", 0)), conns_handshaken=held,
                               conns_alive_at_end=alive, open_s=round(open_s, 2),
                               rss_before_kib=rss0, rss_held_kib=rss1, peak_rss_kib=hwm1,
                               proxy_cpu_s=(cpu1 - cpu0) / CLK_TCK, proxy_pids=pids,
                               ts=datetime.datetime.now().isoformat(timespec="seconds"))
                    rec["kib_per_conn"] = (rss1 - rss0) / held if held else None
                    rec["ok"] = held == n and alive == n
                    if not rec["ok"]:
                        self.failures.append(f"{sid}/{t} rep {rep}: {held}/{n} handshaken, {alive} alive")
                    self.emit(rec)
                    kpc = rec["kib_per_conn"]
                    log(f"  d     rep {rep} {t:8} {held}/{n} conns (alive {alive}) in {open_s:.1f}s  "
                        f"RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB  "
                        f"{'%.2f' % kpc if kpc is not None else '-'} KiB/conn"
                        + ("" if rec["ok"] else "  FAILED"))
                finally:
                    if client is not None:
                        self.procs.stop(client)
                    self.procs.stop(px["proc"])
        return unavailable

    # ------------------------------------------------------------------ run
    def make_cert(self):
        self.cert = os.path.join(self.work, "cert.pem")
        self.key = os.path.join(self.work, "key.pem")
        self.cert_pem = os.path.join(self.work, "haproxy.pem")
        out = run_cmd(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                       "-nodes", "-days", "7", "-subj", "/CN=localhost", "-keyout", self.key,
                       "-out", self.cert], timeout=30)
        if not os.path.exists(self.cert):
            raise SystemExit("openssl could not make a test certificate:\n" + out)
        with open(self.cert_pem, "w") as f:
            f.write(open(self.cert).read() + open(self.key).read())

    def meta(self):
        def first_line(s):
            return s.strip().splitlines()[0] if s.strip() else "?"

        model = "?"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        commit = run_cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip() or "?"
        dirty = run_cmd(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock",
                         "build.rs", "proto", "bench/echo"]).strip()
        return dict(
            kind="meta", date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            nproc=os.cpu_count(), cpu_model=model, kernel=platform.release(),
            haproxy=first_line(run_cmd(["haproxy", "-v"])), nginx=first_line(run_cmd(["nginx", "-v"])),
            h2load=first_line(run_cmd(["h2load", "--version"])),
            weir_commit=commit + ("-dirty" if dirty else ""), bin_dir=self.source_bin_dir,
            weir_sha256_12=self.bin_sums["weir"], weir_b_bin=self.weir_b,
            weir_b_sha256_12=self.bin_sums.get("weir-b"), weir_b_global=self.weir_b_global,
            weir_b_defaults=self.weir_b_defaults,
            proxy_cpus=self.proxy_cpus or "any", load_cpus=self.load_cpus or "any",
            backend_cpus=self.backend_cpus or "any", proxy_threads=self.threads,
            h2load_threads=self.h2load_threads, duration_s=self.args.duration, reps=self.args.reps,
            warmup_s=self.args.warmup, quick=self.args.quick, idle_conns=self.idle_n,
            max_other_pct=self.max_other, max_steal_pct=self.max_steal, retries=self.retries,
            load_cpu_key=f"busy_pct_cpu{self.load_cpus}" if self.load_cpus.isdigit() else None,
        )

    def snapshot_binaries(self):
        """Copy weir and weir-echo into the work dir: a `cargo build` running in
        parallel (a shared machine) must not swap them between scenarios."""
        import hashlib
        dest = os.path.join(self.work, "bin")
        os.makedirs(dest)
        sums = {}
        for name in ("weir", "weir-echo") + (("weir-b",) if self.weir_b else ()):
            src = self.weir_b if name == "weir-b" else os.path.join(self.args.bin_dir, name)
            if not os.access(src, os.X_OK):
                raise SystemExit(f"{src} is missing: build it first (bench/run.sh does)")
            shutil.copy2(src, os.path.join(dest, name))
            with open(src, "rb") as f:
                sums[name] = hashlib.sha256(f.read()).hexdigest()[:12]
        self.source_bin_dir = self.args.bin_dir
        self.args.bin_dir = dest
        return sums

    def run(self, scenario_ids):
        t_start = time.monotonic()
        self.bin_sums = self.snapshot_binaries()
        self.meta_rec = self.meta()
        self.emit(self.meta_rec)
        log(f"weir bench: {', '.join(scenario_ids)}; {self.args.reps} rep(s) x {self.args.duration}s; "
            f"proxy CPUs {self.proxy_cpus or 'any'}, load+backends CPUs {self.load_cpus or 'any'}"
            f"/{self.backend_cpus or 'any'}; work dir {self.work}")
        self.make_cert()
        self.start_backends()
        self.direct_port = self.be_ports[0]
        self.unavailable = {}
        for sid in scenario_ids:
            scen = SCENARIOS[sid]
            log(f"== {scen['title']}")
            if scen["kind"] == "idle":
                self.unavailable[sid] = self.run_idle_scenario(sid, scen)
            else:
                self.unavailable[sid] = self.run_h2load_scenario(sid, scen)
        elapsed = time.monotonic() - t_start
        md = render_markdown(self.meta_rec, self.records, scenario_ids, self.unavailable, elapsed)
        with open(self.out_md, "w") as f:
            f.write(md)
        print()
        print(md)
        log(f"wrote {self.out_md} and {self.out_jsonl} ({elapsed:.0f} s)")

    def close(self):
        self.procs.stop_all()
        self.jsonl.close()
        if not self.args.keep_workdir:
            shutil.rmtree(self.work, ignore_errors=True)


def wait_quiet(max_wait, busy_limit=15.0):
    """Wait (at most max_wait s) until the machine is idle: all CPUs together
    less than busy_limit % busy over a 3 s window."""
    deadline = time.monotonic() + max_wait
    while True:
        a = proc_stat().get("cpu")
        time.sleep(3)
        b = proc_stat().get("cpu")
        # busy = other processes + hypervisor steal, over all CPUs
        busy = 100.0 * (b[0] - a[0] + b[1] - a[1]) / max(1, b[2] - a[2]) if a and b else 0.0
        if busy < busy_limit:
            log(f"machine is quiet ({busy:.0f}% busy): starting")
            return True
        if time.monotonic() >= deadline:
            log(f"machine still {busy:.0f}% busy after {max_wait:.0f} s: starting anyway")
            return False
        log(f"machine {busy:.0f}% busy (other jobs): waiting")
        time.sleep(7)


def read_line(proc, timeout):
    """One line from proc.stdout, waiting at most timeout seconds."""
    import select
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
        if b"\n" in buf:
            break
    return buf.decode(errors="replace").split("\n")[0]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- report

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(vals))}–{fmt(max(vals))})"


def f0(v):
    return f"{v:,.0f}"


def f1(v):
    return f"{v:,.1f}"


def f2(v):
    return f"{v:.2f}"


PRIMARY = {"unary": ("rps", True), "lat": ("p50_us", False), "rate": ("p99_us", False), "large": ("mib_s", True),
           "stream": ("mib_s", True), "idle": ("kib_per_conn", False)}


def paired_ratios(runs, target, base, metric):
    """Per repetition target/base (the two ran back to back), so drift cancels."""
    by_rep = {}
    for r in runs:
        by_rep.setdefault(r["rep"], {})[r["target"]] = r
    out = []
    for rep in sorted(by_rep):
        a, b = by_rep[rep].get(target), by_rep[rep].get(base)
        if a and b and a.get(metric) and b.get(metric):
            out.append(a[metric] / b[metric])
    return out


def render_markdown(meta, records, scenario_ids, unavailable, elapsed):
    L = []
    L.append("# weir benchmark results")
    L.append("")
    L.append(f"- date: {meta['date']}; harness wall time {elapsed:.0f} s"
             + (" (**--quick smoke run: numbers are not meaningful**)" if meta["quick"] else ""))
    L.append(f"- machine: {meta['nproc']} CPUs ({meta['cpu_model']}), Linux {meta['kernel']}")
    L.append(f"- versions: weir {meta['weir_commit']} ({meta['bin_dir']}, sha256 {meta['weir_sha256_12']}…), "
             + (f"weir-b {meta['weir_b_bin']} (sha256 {meta['weir_b_sha256_12']}…"
                + (f"; extra global lines: {'; '.join(meta['weir_b_global'])}" if meta.get("weir_b_global") else "")
                + (f"; extra defaults lines: {'; '.join(meta['weir_b_defaults'])}" if meta.get("weir_b_defaults") else "")
                + "), " if meta.get("weir_b_bin") else "")
             + f"{meta['haproxy']}, "
             f"{meta['nginx']}, {meta['h2load']}")
    L.append(f"- pinning: proxy on CPU {meta['proxy_cpus']}, h2load on CPU {meta['load_cpus']}, "
             f"backends (2 × weir-echo) on CPU {meta['backend_cpus']}; {meta['proxy_threads']} proxy "
             f"thread(s)/worker(s); h2load -t {meta['h2load_threads']}")
    L.append(f"- each cell: median (min–max) over {meta['reps']} repetition(s) of {meta['duration_s']} s, "
             f"targets alternating within each repetition; ratios are per-repetition pairs "
             f"(target ÷ base measured back to back), median (min–max)")
    L.append("")
    runs_all = [r for r in records if r.get("kind") == "run" and not r.get("discarded")]
    noisy = [r for r in runs_all if r.get("noisy")]
    for sid in scenario_ids:
        scen = SCENARIOS[sid]
        runs = [r for r in runs_all if r["scenario"] == sid]
        L.append(f"## {scen['title']}")
        L.append("")
        L.append(scen["what"])
        L.append("")
        kind = scen["kind"]
        metric, higher = PRIMARY[kind]
        targets = scen["targets"] + [t for t in scen.get("na", {})]
        has_direct = "direct" in scen["targets"]
        has_b = "weir-b" in scen["targets"]
        has_haproxy = "haproxy" in scen["targets"]
        # With splice targets: a "÷ weir" column (each against plain weir).
        has_weir_base = any(t.endswith("-splice") for t in scen["targets"])
        scrape = scen.get("scrape")

        bases = scen.get("bases") or ((["direct"] if has_direct else []) + (["haproxy"] if has_haproxy else [])
                                      + (["weir-b"] if has_b else []) + (["weir"] if has_weir_base else []))

        def ratio_cells(t):
            cells = []
            for base in bases:
                if t == base:
                    cells.append("1")
                else:
                    cells.append(spread(paired_ratios(runs, t, base, metric), f2))
            return cells

        def ratio_heads(label):
            return [f"{label} ÷ {base}" for base in bases]

        if kind in ("unary", "lat", "rate", "large", "stream"):
            if kind == "unary":
                heads = ["target", "calls/s"] + ratio_heads("calls/s") + [
                    "p50 µs", "p99 µs", "proxy CPU µs/call", "proxy CPU %", "peak RSS MiB", "errors",
                    "load CPU busy %", "other jobs CPU %", "steal %"]
            elif kind == "lat":
                heads = ["target", "p50 µs"] + ratio_heads("p50") + [
                    "p99 µs", "calls/s", "proxy CPU µs/call", "peak RSS MiB", "errors",
                    "load CPU busy %", "other jobs CPU %", "steal %"]
            elif kind == "rate":
                heads = ["target", "p99 µs"] + ratio_heads("p99") + [
                    "p50 µs", "p90 µs", "calls/s", "proxy CPU µs/call", "of which kernel µs",
                    "proxy CPU %", "peak RSS MiB", "errors", "load CPU busy %", "other jobs CPU %", "steal %"]
            elif kind == "large":
                heads = ["target", "MiB/s"] + ratio_heads("MiB/s") + [
                    "calls/s", "p50 µs", "p99 µs", "proxy CPU µs/call", "proxy CPU µs/MiB",
                    "peak RSS MiB", "errors", "load CPU busy %", "other jobs CPU %", "steal %"]
            else:
                heads = ["target", "MiB/s"] + ratio_heads("MiB/s") + [
                    "streams done", "proxy CPU µs/MiB", "proxy CPU %", "peak RSS MiB", "errors",
                    "load CPU busy %", "other jobs CPU %", "steal %"]
            if scrape:
                heads.insert(heads.index("errors") + 1, f"{scrape} scrapes")
            L.append("| " + " | ".join(heads) + " |")
            L.append("|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|")
            for t in targets:
                if t in scen.get("na", {}):
                    L.append(f"| {t} | " + " | ".join([scen["na"][t]] + [""] * (len(heads) - 2)) + " |")
                    continue
                if t in unavailable.get(sid, {}):
                    reason = unavailable[sid][t].replace("|", "/").replace("\n", " ")[:160]
                    L.append(f"| {t} | **failed**: {reason} " + "| " * (len(heads) - 2) + "|")
                    continue
                rs = [r for r in runs if r["target"] == t]
                if not rs:
                    continue

                def col(key, fmt, rs=rs):
                    return spread([r.get(key) for r in rs], fmt)

                def rss(rs=rs):
                    return spread([r["peak_rss_kib"] / 1024 if r.get("peak_rss_kib") else None for r in rs], f1)

                load_cpu = meta.get("load_cpu_key")
                noise = [col(load_cpu, f0) if load_cpu else "–", col("other_cpu_pct", f0), col("steal_pct", f0)]
                errs = sum(r.get("errors", 0) for r in rs)
                errs_s = str(errs) if errs == 0 else f"**{errs}**"
                proxy = t != "direct"
                if kind == "unary":
                    cells = [col("rps", f0)] + ratio_cells(t) + [
                        col("p50_us", f0), col("p99_us", f0),
                        col("cpu_us_per_call", f1) if proxy else "–",
                        col("cpu_pct", f0) if proxy else "–", rss() if proxy else "–", errs_s] + noise
                elif kind == "lat":
                    cells = [col("p50_us", f0)] + ratio_cells(t) + [
                        col("p99_us", f0), col("rps", f0),
                        col("cpu_us_per_call", f1) if proxy else "–", rss() if proxy else "–", errs_s] + noise
                elif kind == "rate":
                    sys_per_call = [r["proxy_sys_s"] * 1e6 / r["succeeded"] if r.get("succeeded") and "proxy_sys_s" in r
                                    else None for r in rs]
                    cells = [col("p99_us", f0)] + ratio_cells(t) + [
                        col("p50_us", f0), col("p90_us", f0), col("rps", f0),
                        col("cpu_us_per_call", f1) if proxy else "–",
                        spread(sys_per_call, f1) if proxy else "–",
                        col("cpu_pct", f0) if proxy else "–", rss() if proxy else "–", errs_s] + noise
                elif kind == "large":
                    cells = [col("mib_s", f1)] + ratio_cells(t) + [
                        col("rps", f0), col("p50_us", f0), col("p99_us", f0),
                        col("cpu_us_per_call", f0) if proxy else "–",
                        col("cpu_us_per_mib", f0) if proxy else "–", rss() if proxy else "–", errs_s] + noise
                else:
                    cells = [col("mib_s", f1)] + ratio_cells(t) + [
                        col("succeeded", f0), col("cpu_us_per_mib", f0) if proxy else "–",
                        col("cpu_pct", f0) if proxy else "–", rss() if proxy else "–", errs_s] + noise
                if scrape:
                    tried = sum(r.get("scrapes", 0) for r in rs)
                    ok200 = sum(r.get("scrapes_200", 0) for r in rs)
                    if not proxy:
                        sc = "–"
                    elif tried and ok200 == tried:
                        sc = f"{ok200} of {tried}, all HTTP 200"
                    else:
                        sc = f"**{ok200} of {tried} HTTP 200**"
                    cells.insert(heads.index("errors"), sc)
                L.append(f"| {t} | " + " | ".join(cells) + " |")
        elif kind == "idle":
            heads = ["target", "conns held", "RSS before MiB", "RSS holding MiB", "KiB per conn",
                     "KiB/conn ÷ haproxy", "proxy CPU s to accept", "still open at end"]
            L.append("| " + " | ".join(heads) + " |")
            L.append("|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|")
            for t in targets:
                if t in unavailable.get(sid, {}):
                    reason = unavailable[sid][t].replace("|", "/").replace("\n", " ")[:160]
                    L.append(f"| {t} | **failed**: {reason} " + "| " * (len(heads) - 2) + "|")
                    continue
                rs = [r for r in runs if r["target"] == t]
                if not rs:
                    continue
                held = spread([r["conns_handshaken"] for r in rs], f0)
                cells = [
                    held,
                    spread([r["rss_before_kib"] / 1024 for r in rs], f1),
                    spread([r["rss_held_kib"] / 1024 for r in rs], f1),
                    spread([r["kib_per_conn"] for r in rs], f2),
                    "1" if t == "haproxy" else spread(paired_ratios(runs, t, "haproxy", "kib_per_conn"), f2),
                    spread([r["proxy_cpu_s"] for r in rs], f2),
                    spread([r["conns_alive_at_end"] for r in rs], f0),
                ]
                L.append(f"| {t} | " + " | ".join(cells) + " |")
        L.append("")
    if noisy:
        L.append(f"**{len(noisy)} of {len(runs_all)} runs kept had other jobs above "
                 f"{meta.get('max_other_pct')}% or steal above {meta.get('max_steal_pct')}% of a CPU** "
                 f"(after {meta.get('retries')} retries): "
                 + ", ".join(f"{r['scenario']}/{r['target']} rep {r['rep']} (other {r.get('other_cpu_pct', 0):.0f}%, "
                             f"steal {r.get('steal_pct', 0):.0f}%)" for r in noisy) + ".")
        L.append("")
    L.append("Notes: calls/s counts calls h2load saw answered with HTTP 200 (h2load cannot read "
             "`grpc-status` trailers; one call per target per scenario is checked for "
             "`grpc-status: 0` with nghttp before measuring). MiB/s = response DATA bytes received "
             "by h2load per second. 'load CPU busy %' = how busy the CPU running h2load and the "
             "backends was (near 100 %: the load side, not the proxy, limits calls/s). 'other jobs "
             "CPU %' = CPU used during the run by processes outside the benchmark, in % of one CPU "
             "; 'steal %' = time the hypervisor ran something else while this VM wanted its CPUs, in % "
             "of one CPU (runs above either threshold are measured again). Proxy CPU = utime+stime of all the "
             "proxy's processes (nginx: master + worker) over the run ÷ calls answered. Peak RSS = "
             "sum of VmHWM, reset before each run. Latency percentiles come from h2load's "
             "per-request log (request start to end of response, so they include queueing inside "
             "h2load at high concurrency).")
    L.append("")
    return "\n".join(L)


# ------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="weir vs HAProxy vs nginx, side by side")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--quick", action="store_true", help="~10 s smoke run: scenario a, 1 rep, 1 s")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None, help="seconds per measured run")
    ap.add_argument("--warmup", type=float, default=None, help="unrecorded seconds per target per scenario")
    ap.add_argument("--scenarios", default=None, help=f"comma list of {DEFAULT_ORDER} (b = b64k,b1m; all)")
    ap.add_argument("--out", default=None,
                    help="markdown report (JSONL next to it); default bench/results/latest.md, "
                         "with --quick target/bench-quick.md (so a smoke run never overwrites results)")
    ap.add_argument("--keep-workdir", action="store_true")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="first wait up to S seconds for other jobs on the machine to finish")
    a = ap.parse_args()
    if a.out is None:
        a.out = (os.path.join(ROOT, "target", "bench-quick.md") if a.quick
                 else os.path.join(HERE, "results", "latest.md"))
    if a.quick:
        a.reps = a.reps or 1
        a.duration = a.duration or 1.0
        a.warmup = 0.0 if a.warmup is None else a.warmup
        a.scenarios = a.scenarios or "a"
    a.reps = a.reps or int(os.environ.get("BENCH_REPS", "3"))
    a.duration = a.duration or float(os.environ.get("BENCH_DURATION", "4"))
    a.warmup = 1.0 if a.warmup is None else a.warmup
    ids = []
    for s in (a.scenarios or ",".join(DEFAULT_ORDER)).split(","):
        s = s.strip()
        if not s:
            continue
        for x in ALIASES.get(s, [s]):
            if x not in SCENARIOS:
                ap.error(f"unknown scenario {x!r}; known: {', '.join(DEFAULT_ORDER)} (b = b64k,b1m)")
            if x not in ids:
                ids.append(x)
    if a.reps < 1 or a.reps > 50 or a.duration <= 0 or a.duration > 120:
        ap.error("--reps must be 1..50 and --duration 0..120 s")

    if a.wait_quiet > 0:
        wait_quiet(min(a.wait_quiet, 3600))
    bench = Bench(a)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        bench.run(ids)
    except KeyboardInterrupt:
        log("interrupted: stopping what this harness started")
        return 130
    finally:
        bench.close()
    if bench.failures:
        log("FAILED: some targets did not serve every call:")
        for f in bench.failures:
            log("  " + f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
