"""A second gRPC implementation (Python grpcio) talking to weir.

Usage: grpc_client.py HOST:PORT
Talks to weir.echo.Echo without generated stubs: the protobuf messages are
encoded by hand (they are tiny), so only `grpcio` is needed. Prints one line
per check and exits non-zero on the first failure.
"""
import sys

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def echo_request(payload=b"", status_code=0, status_message="", reply_count=0, reply_size=0):
    msg = field_bytes(1, payload) if payload else b""
    if status_code:
        msg += field_varint(2, status_code)
    if status_message:
        msg += field_bytes(3, status_message.encode())
    if reply_count:
        msg += field_varint(6, reply_count)
    if reply_size:
        msg += field_varint(7, reply_size)
    return msg


def parse(msg):
    """Returns {field number: value} for a flat protobuf message."""
    out, i = {}, 0
    while i < len(msg):
        key, shift = 0, 0
        while True:
            b = msg[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, shift = 0, 0
            while True:
                b = msg[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out[num] = v
        elif wt == 2:
            ln, shift = 0, 0
            while True:
                b = msg[i]
                i += 1
                ln |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out[num] = msg[i : i + ln]
            i += ln
        else:
            raise ValueError("unexpected wire type %d" % wt)
    return out


def ident(x):
    return x


def main():
    target = sys.argv[1]
    ch = grpc.insecure_channel(target)
    unary = ch.unary_unary("/weir.echo.Echo/Unary", request_serializer=ident, response_deserializer=ident)
    sstream = ch.unary_stream("/weir.echo.Echo/ServerStream", request_serializer=ident, response_deserializer=ident)
    bidi = ch.stream_stream("/weir.echo.Echo/Bidi", request_serializer=ident, response_deserializer=ident)

    servers = {}
    for _ in range(30):
        reply, call = unary.with_call(echo_request(b"py"), metadata=[("x-py", "yes")], timeout=10)
        r = parse(reply)
        assert r[1] == b"py", r
        md = dict(call.initial_metadata())
        assert md.get("echo-x-py") == "yes", md
        servers[r[2].decode()] = servers.get(r[2].decode(), 0) + 1
    print("unary spread", sorted(servers.items()))
    assert len(servers) == 3 and all(n == 10 for n in servers.values()), servers

    try:
        unary(echo_request(status_code=5, status_message="not here"), timeout=10)
        raise AssertionError("expected NOT_FOUND")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
        assert e.details() == "not here", e.details()
        trailers = dict(e.trailing_metadata())
        assert "x-trailer-echo" in trailers, trailers
    print("error status ok")

    n = sum(1 for _ in sstream(echo_request(reply_count=20, reply_size=100), timeout=10))
    assert n == 20, n
    print("server stream ok")

    replies = list(bidi(iter([echo_request(b"a"), echo_request(b"b"), echo_request(b"c")]), timeout=10))
    assert [parse(r)[1] for r in replies] == [b"a", b"b", b"c"], replies
    print("bidi ok")
    print("python grpcio: all checks passed")


if __name__ == "__main__":
    main()
