//! weir must not only work with tonic: the same checks with Python's grpcio
//! (installed by .ci/run from PyPI).

mod common;

use common::*;

/// `http-request deny` answers are trailers-only gRPC statuses that grpcio
/// reads as the matching status codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_sees_policy_denials() {
    let servers = echo_servers(1).await;
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let cfg = http_config(&addrs, "").replace(
        "    default_backend be\n",
        "    http-request deny unless { req.hdr(mysecretpassphrase) -m str abc123 }\n    http-request deny deny_status 429 if { req.hdr(x-deny) -m str 429 }\n    default_backend be\n",
    );
    let proxy = start_proxy(&cfg).await;
    run_script(
        "policy_client.py",
        fe_addr(&proxy),
        "python grpcio policy: all checks passed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_through_weir() {
    let python = python();
    let servers = echo_servers(3).await;
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let proxy = start_proxy(&http_config(&addrs, "")).await;
    let addr = fe_addr(&proxy);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/grpc_client.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(addr.to_string())
        .output();
    let out = within(60, out).await.expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("python grpcio: all checks passed"),
        "{stdout}"
    );
}

/// grpcio over TLS (ALPN h2 is mandatory for it) with a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_over_tls_with_a_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "Test CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca = p.self_signed(&ca_key).expect("ca");
    let leaf = |names: Vec<String>| {
        let p = CertificateParams::new(names).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &ca, &ca_key).expect("leaf");
        (cert.pem(), key.serialize_pem())
    };
    let (sc, sk) = leaf(vec!["localhost".into()]);
    let (cc, ck) = leaf(vec!["client.test".into()]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let crt = write("weir.pem", &format!("{sc}{sk}"));
    let ca_file = write("ca.pem", &ca.pem());
    let client_crt = write("client.crt", &cc);
    let client_key = write("client.key", &ck);
    let servers = echo_servers(1).await;
    let cfg = format!(
        "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:0 ssl crt {crt} ca-file {ca_file} verify required\n    default_backend be\nbackend be\n    server s1 {} proto h2\n",
        servers[0].addr
    );
    let proxy = start_proxy(&cfg).await;
    let path = format!("{}/tests/py/tls_client.py", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python())
        .args([
            &path,
            &fe_addr(&proxy).to_string(),
            &ca_file,
            "localhost",
            &client_crt,
            &client_key,
        ])
        .output();
    let out = within(60, out).await.expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tls_client.py failed\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("python grpcio tls: all checks passed"),
        "{stdout}"
    );
}
