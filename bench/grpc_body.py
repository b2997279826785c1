#!/usr/bin/env python3
"""Write one length-prefixed gRPC message (an EchoRequest) to a file, for
h2load's -d option.

    grpc_body.py OUT --payload BYTES [--reply-count N] [--reply-size BYTES]

EchoRequest (bench/echo/proto/echo.proto) is encoded by hand so that the
harness needs no protobuf library: payload = field 1 (bytes),
reply_count = field 6 (uint32), reply_size = field 7 (uint32). The payload
is the pattern byte[i] = i % 251, as weir-echo uses.
"""
import argparse
import struct
import sys


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def echo_request(payload: int, reply_count: int = 0, reply_size: int = 0) -> bytes:
    msg = bytearray()
    if payload:
        msg += b"\x0a" + varint(payload) + bytes(i % 251 for i in range(payload))
    if reply_count:
        msg += b"\x30" + varint(reply_count)
    if reply_size:
        msg += b"\x38" + varint(reply_size)
    return bytes(msg)


def grpc_frame(message: bytes) -> bytes:
    # 1 byte compressed flag (0), 4 bytes big-endian length, the message.
    return b"\x00" + struct.pack(">I", len(message)) + message


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--payload", type=int, default=0)
    ap.add_argument("--reply-count", type=int, default=0)
    ap.add_argument("--reply-size", type=int, default=0)
    a = ap.parse_args()
    body = grpc_frame(echo_request(a.payload, a.reply_count, a.reply_size))
    with open(a.out, "wb") as f:
        f.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
