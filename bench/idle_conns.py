#!/usr/bin/env python3
"""Open many mostly idle HTTP/2 client connections and hold them.

    idle_conns.py HOST PORT N [--tls] [--concurrency 256] [--hold 120]

Each connection sends the HTTP/2 client preface and an empty SETTINGS frame,
acknowledges the server's SETTINGS (and answers PINGs), then sends nothing
more: no stream is ever opened. A connection counts as "handshaken" once the
server's SETTINGS has arrived.

Protocol with the caller (bench/harness.py), one line each on stdout:
  ready opened=<n> handshaken=<n> failed=<n> elapsed_s=<t>
then it waits for a line on stdin (or --hold seconds at most), prints
  done alive=<n> closed_by_server=<n> goaway=<n>
closes everything and exits. Every wait is bounded.
"""
import argparse
import asyncio
import resource
import ssl
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


SETTINGS = frame(4, 0, 0)
SETTINGS_ACK = frame(4, 1, 0)


class State:
    def __init__(self) -> None:
        self.opened = 0
        self.handshaken = 0
        self.failed = 0
        self.closed = 0
        self.goaway = 0
        self.writers = []


async def reader(r: asyncio.StreamReader, w: asyncio.StreamWriter, st: State, shaken: asyncio.Event) -> None:
    try:
        while True:
            hdr = await r.readexactly(9)
            length = int.from_bytes(hdr[:3], "big")
            ftype, flags = hdr[3], hdr[4]
            payload = await r.readexactly(length) if length else b""
            if ftype == 4 and not flags & 1:  # SETTINGS
                w.write(SETTINGS_ACK)
                if not shaken.is_set():
                    shaken.set()
            elif ftype == 6 and not flags & 1:  # PING
                w.write(frame(6, 1, 0, payload))
            elif ftype == 7:  # GOAWAY
                st.goaway += 1
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    st.closed += 1


async def one(host: str, port: int, ctx, st: State, sem: asyncio.Semaphore, tasks: list) -> None:
    async with sem:
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost" if ctx else None),
                timeout=10,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            st.failed += 1
            return
        st.opened += 1
        st.writers.append(w)
        w.write(PREFACE + SETTINGS)
        shaken = asyncio.Event()
        tasks.append(asyncio.ensure_future(reader(r, w, st, shaken)))
        try:
            await asyncio.wait_for(shaken.wait(), timeout=10)
            st.handshaken += 1
        except asyncio.TimeoutError:
            pass


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--hold", type=float, default=120.0, help="max seconds to wait for the stdin line")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.n + 256) if hard != resource.RLIM_INFINITY else a.n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    ctx = None
    if a.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])

    st = State()
    sem = asyncio.Semaphore(a.concurrency)
    tasks: list = []
    t0 = time.monotonic()
    opening = [asyncio.ensure_future(one(a.host, a.port, ctx, st, sem, tasks)) for _ in range(a.n)]
    try:
        await asyncio.wait_for(asyncio.gather(*opening), timeout=120)
    except asyncio.TimeoutError:
        pass
    print(
        f"ready opened={st.opened} handshaken={st.handshaken} failed={st.failed} "
        f"elapsed_s={time.monotonic() - t0:.2f}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout=a.hold)
    except asyncio.TimeoutError:
        pass
    alive = st.opened - st.closed
    print(f"done alive={alive} closed_by_server={st.closed} goaway={st.goaway}", flush=True)
    for w in st.writers:
        w.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
