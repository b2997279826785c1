"""Deadline check with Python's grpcio through weir (argv[1]: proxy address).

A unary call with timeout=0.3 to an echo server told to sleep 2 s ends with
DEADLINE_EXCEEDED in well under the sleep; a call with a generous timeout
to a quick server succeeds."""
import sys
import time

import grpc


def ident(x):
    return x


# EchoRequest { sleep_ms: 2000 } (field 5, varint).
SLEEP_2S = b"\x28\xd0\x0f"


def main():
    ch = grpc.insecure_channel(sys.argv[1])
    unary = ch.unary_unary("/weir.echo.Echo/Unary", request_serializer=ident, response_deserializer=ident)
    t = time.monotonic()
    try:
        unary(SLEEP_2S, timeout=0.3)
        raise AssertionError("expected DEADLINE_EXCEEDED")
    except grpc.RpcError as e:
        took = time.monotonic() - t
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (e.code(), e.details())
        assert took < 1.5, took
    print("deadline exceeded ok")

    unary(b"", timeout=5)
    print("call within its deadline ok")
    print("python grpcio deadline: all checks passed")


if __name__ == "__main__":
    main()
