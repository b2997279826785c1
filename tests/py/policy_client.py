"""Policy checks with Python's grpcio through weir (argv[1]: proxy address).

The proxy denies calls without `mysecretpassphrase: abc123` and answers
`x-deny: 429` with deny_status 429; allowed calls reach echo server s1."""
import sys

import grpc


def ident(x):
    return x


def main():
    ch = grpc.insecure_channel(sys.argv[1])
    unary = ch.unary_unary("/weir.echo.Echo/Unary", request_serializer=ident, response_deserializer=ident)
    try:
        unary(b"", timeout=10)
        raise AssertionError("expected PERMISSION_DENIED")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e.code()
        assert "request denied" in e.details(), e.details()
    print("denied without passphrase ok")

    ok = [("mysecretpassphrase", "abc123")]
    try:
        unary(b"", metadata=ok + [("x-deny", "429")], timeout=10)
        raise AssertionError("expected RESOURCE_EXHAUSTED")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.code()
    print("deny_status 429 ok")

    _, call = unary.with_call(b"", metadata=ok, timeout=10)
    md = dict(call.initial_metadata())
    assert md.get("x-echo-server") == "s1", md
    print("allowed with passphrase ok")
    print("python grpcio policy: all checks passed")


if __name__ == "__main__":
    main()
