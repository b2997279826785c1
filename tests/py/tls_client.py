"""gRPC over TLS with Python's grpcio through weir.

argv[1]: proxy address, argv[2]: CA file, argv[3]: name to verify,
argv[4] / argv[5] (optional): client certificate and key files (mTLS)."""
import sys

import grpc


def ident(x):
    return x


def main():
    target, ca_file, name = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(ca_file, "rb") as f:
        ca = f.read()
    cert = key = None
    if len(sys.argv) > 5:
        with open(sys.argv[4], "rb") as f:
            cert = f.read()
        with open(sys.argv[5], "rb") as f:
            key = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    ch = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", name)])
    unary = ch.unary_unary("/weir.echo.Echo/Unary", request_serializer=ident, response_deserializer=ident)
    for _ in range(3):
        _, call = unary.with_call(b"", timeout=10)
        md = dict(call.initial_metadata())
        assert md.get("x-echo-server") == "s1", md
    print("python grpcio tls: all checks passed")


if __name__ == "__main__":
    main()
