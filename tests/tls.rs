//! TLS on both sides (issue 5): termination with ALPN and SNI, mutual TLS
//! with the client certificate visible to ACLs and logs, verified TLS to
//! servers, and the configuration errors for bad certificate files.
//! Certificates are made here with rcgen.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::Code;
use weir_echo::pb::echo_client::EchoClient;
use weir_echo::pb::echo_server::EchoServer;
use weir_echo::pb::EchoRequest;
use weir_echo::{EchoService, Stats};

use common::*;

// ------------------------------------------------------------ PKI

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("ca cert");
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate for `names` (DNS names or IP addresses), subject
    /// `/O=Example/CN=<cn>`; returns (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str], cn: &str, client: bool) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Example");
        p.distinguished_name.push(DnType::CommonName, cn);
        if client {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// Files in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

// -------------------------------------------------------- servers

/// An echo gRPC server speaking TLS with `cert`/`key` (ALPN h2).
async fn tls_echo(id: &str, cert: &str, key: &str) -> SocketAddr {
    let l = TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let service = EchoService::new(id, Arc::new(Stats::default())).expect("service");
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    let (_reporter, health) = tonic_health::server::health_reporter();
    let router = Server::builder()
        .tls_config(tls)
        .expect("tls config")
        .add_service(health)
        .add_service(EchoServer::new(service));
    tokio::spawn(async move {
        let _ = router.serve_with_incoming(TcpListenerStream::new(l)).await;
    });
    addr
}

/// A tonic channel to weir over TLS, trusting `ca`, presenting `domain`.
async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    domain: &str,
    id: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(domain);
    if let Some((c, k)) = id {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

async fn unary(ch: &Channel) -> Result<String, tonic::Status> {
    let mut c = EchoClient::new(ch.clone());
    let r = c
        .unary(EchoRequest {
            payload: b"hi".to_vec().into(),
            ..Default::default()
        })
        .await?;
    Ok(r.into_inner().server)
}

/// The four RPC kinds through `ch`; all must reach server `id`.
async fn all_kinds(ch: &Channel, id: &str) {
    let mut c = EchoClient::new(ch.clone());
    assert_eq!(unary(ch).await.expect("unary"), id);
    let reqs = (0..3).map(|_| EchoRequest {
        payload: vec![7u8; 1000].into(),
        ..Default::default()
    });
    let r = c
        .client_stream(tokio_stream::iter(reqs.clone()))
        .await
        .expect("client stream")
        .into_inner();
    assert_eq!((r.seq, r.received_bytes), (3, 3000));
    let mut s = c
        .server_stream(EchoRequest {
            reply_count: 50,
            reply_size: 512,
            ..Default::default()
        })
        .await
        .expect("server stream")
        .into_inner();
    let mut n = 0;
    while let Some(m) = within(10, s.message()).await.expect("message") {
        assert_eq!(m.payload.len(), 512);
        n += 1;
    }
    assert_eq!(n, 50);
    let mut b = c
        .bidi(tokio_stream::iter(reqs))
        .await
        .expect("bidi")
        .into_inner();
    let mut n = 0;
    while let Some(m) = within(10, b.message()).await.expect("message") {
        assert_eq!(m.server, id);
        n += 1;
    }
    assert_eq!(n, 3);
}

fn load(cfg: &str) -> weir::config::Loaded {
    match weir::config::parse_str("weir.cfg", cfg) {
        Ok(l) => l,
        Err(e) => panic!("config does not parse:\n{e}\n---\n{cfg}"),
    }
}

// ------------------------------------------------------------ tests

/// The issue's configuration, as written (paths and addresses aside):
/// client -TLS-> weir -TLS-> server, every RPC kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_sides_with_the_issue_config() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    let (fc, fk) = ca.leaf(&["localhost", "127.0.0.1"], "weir", false);
    let cert = f.write("cert.pem", &format!("{fc}{fk}"));
    let (sc, sk) = ca.leaf(&["127.0.0.1"], "server1", false);
    let server_ca = f.write("server.crt", &ca.pem());
    let backend = tls_echo("s1", &sc, &sk).await;
    let cfg = format!(
        "\
global
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 10s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:0 ssl crt {} alpn h2
    default_backend be_servers
backend be_servers
    balance roundrobin
    server server1 {backend} check maxconn 20 ssl alpn h2 ca-file {}
",
        show(&cert),
        show(&server_ca)
    );
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    let addr = fe_addr(&proxy);
    let ch = tls_channel(addr, &ca.pem(), "localhost", None)
        .await
        .expect("TLS connect");
    all_kinds(&ch, "s1").await;
}

/// TLS on one side only, both ways round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_one_side_only() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    let (fc, fk) = ca.leaf(&["localhost"], "weir", false);
    let cert = f.write("cert.pem", &format!("{fc}{fk}"));
    let ca_file = f.write("ca.pem", &ca.pem());
    // client -TLS-> weir -h2c-> server
    let plain = echo_servers(1).await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 5s\nfrontend fe\n    bind 127.0.0.1:0 ssl crt {}\n    default_backend be\nbackend be\n    server s1 {} proto h2\n",
        show(&cert),
        plain[0].addr
    );
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    let ch = tls_channel(fe_addr(&proxy), &ca.pem(), "localhost", None)
        .await
        .expect("TLS connect");
    all_kinds(&ch, "s1").await;
    // client -h2c-> weir -TLS-> server
    let (sc, sk) = ca.leaf(&["127.0.0.1"], "server", false);
    let backend = tls_echo("tls-1", &sc, &sk).await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 5s\nfrontend fe\n    bind 127.0.0.1:0\n    default_backend be\nbackend be\n    server s1 {backend} proto h2 ssl ca-file {}\n",
        show(&ca_file)
    );
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    let ch = channel(fe_addr(&proxy)).await;
    all_kinds(&ch, "tls-1").await;
}

/// ALPN: h2 and http/1.1 clients on one TLS port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_serves_h2_and_http11_on_one_port() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    let (fc, fk) = ca.leaf(&["localhost"], "weir", false);
    let cert = f.write("cert.pem", &format!("{fc}{fk}"));
    let servers = echo_servers(1).await;
    let cfg = format!(
        "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:0 ssl crt {}\n    http-request return status 200 content-type text/plain lf-string \"alpn=%[ssl_fc_alpn] proto=%[ssl_fc_protocol]\" if {{ path /who }}\n    default_backend be\nbackend be\n    server s1 {} proto h2\n",
        show(&cert),
        servers[0].addr
    );
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    let addr = fe_addr(&proxy);
    // h2: a gRPC call.
    let ch = tls_channel(addr, &ca.pem(), "localhost", None)
        .await
        .expect("h2 over TLS");
    assert_eq!(unary(&ch).await.expect("unary"), "s1");
    // http/1.1 on the same port.
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(c.expect("ca")).expect("root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls;
    tls.write_all(b"GET /who HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        match within(10, tls.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let out = String::from_utf8_lossy(&raw).into_owned();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("alpn=http/1.1 proto=TLSv1.3"), "{out}");
}

/// A `crt` directory: the certificate is picked by SNI; `ssl_fc_sni` is
/// visible to rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    for name in ["a.test", "b.test"] {
        let (c, k) = ca.leaf(&[name], name, false);
        f.write(&format!("certs/{name}.pem"), &format!("{c}{k}"));
    }
    let servers = echo_servers(1).await;
    let cfg = format!(
        "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:0 ssl crt {}\n    http-request deny if !{{ ssl_fc_sni -m end .test }}\n    default_backend be\nbackend be\n    server s1 {} proto h2\n",
        show(&f.path("certs")),
        servers[0].addr
    );
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    let addr = fe_addr(&proxy);
    for name in ["a.test", "b.test"] {
        // Verification against `name` succeeds only if weir sent that certificate.
        let ch = tls_channel(addr, &ca.pem(), name, None)
            .await
            .expect("handshake");
        assert_eq!(unary(&ch).await.expect("unary"), "s1", "{name}");
    }
    // An unknown name gets the default certificate (the first file: a.test),
    // which is not valid for it.
    let ch = tls_channel(addr, &ca.pem(), "c.example", None).await;
    let failed = match ch {
        Err(_) => true,
        Ok(ch) => unary(&ch).await.is_err(),
    };
    assert!(failed, "c.example must not verify");
}

/// Mutual TLS: no certificate or one from another CA fails the handshake;
/// a good one works and its subject routes and logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_client_subject() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    let clients = Ca::new("Client CA");
    let other = Ca::new("Other CA");
    let (fc, fk) = ca.leaf(&["localhost"], "weir", false);
    let cert = f.write("cert.pem", &format!("{fc}{fk}"));
    let client_ca = f.write("clients.pem", &clients.pem());
    let servers = echo_servers(2).await;
    let logs = tokio::net::UdpSocket::bind(ANY).await.expect("udp");
    let cfg = format!(
        "defaults\n    mode http\n    log {} format raw local0\n    log-format \"%[ssl_c_s_dn] %[ssl_c_verify] %b\"\n\
         frontend fe\n    bind 127.0.0.1:0 ssl crt {} ca-file {} verify required\n\
         use_backend admin if {{ ssl_c_s_dn -m end CN=admin }}\n    default_backend be\n\
         backend be\n    server s1 {} proto h2\nbackend admin\n    server s2 {} proto h2\n",
        logs.local_addr().expect("addr"),
        show(&cert),
        show(&client_ca),
        servers[0].addr,
        servers[1].addr
    );
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    let addr = fe_addr(&proxy);
    let before = weir::tls::HANDSHAKE_FAILURES.load(std::sync::atomic::Ordering::Relaxed);

    // No client certificate.
    let r = match tls_channel(addr, &ca.pem(), "localhost", None).await {
        Err(_) => None,
        Ok(ch) => Some(unary(&ch).await),
    };
    assert!(!matches!(r, Some(Ok(_))), "no certificate must fail: {r:?}");
    // A certificate from another CA.
    let (oc, ok) = other.leaf(&[], "admin", true);
    let r = match tls_channel(addr, &ca.pem(), "localhost", Some((&oc, &ok))).await {
        Err(_) => None,
        Ok(ch) => Some(unary(&ch).await),
    };
    assert!(
        !matches!(r, Some(Ok(_))),
        "foreign certificate must fail: {r:?}"
    );
    wait_for(5, "handshake failures counted", || {
        weir::tls::HANDSHAKE_FAILURES.load(std::sync::atomic::Ordering::Relaxed) >= before + 2
    })
    .await;

    // Good certificates: subject routes and is logged.
    let (uc, uk) = clients.leaf(&[], "user1", true);
    let ch = tls_channel(addr, &ca.pem(), "localhost", Some((&uc, &uk)))
        .await
        .expect("mTLS");
    assert_eq!(unary(&ch).await.expect("unary"), "s1");
    // Before it, each failed handshake was logged with its reason (clients
    // may retry, so at least two).
    let mut buf = vec![0u8; 1024];
    let mut failures = 0;
    let line = loop {
        let n = within(5, logs.recv(&mut buf)).await.expect("log line");
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !line.contains("TLS handshake failed") {
            break line;
        }
        assert!(line.starts_with("127.0.0.1:"), "{line}");
        assert!(
            line.contains(&format!("] fe/{addr}: TLS handshake failed: ")),
            "{line}"
        );
        failures += 1;
        assert!(failures < 50);
    };
    assert!(failures >= 2, "{failures}");
    assert_eq!(line, "/O=Example/CN=user1 0 be");
    let (ac, ak) = clients.leaf(&[], "admin", true);
    let ch = tls_channel(addr, &ca.pem(), "localhost", Some((&ac, &ak)))
        .await
        .expect("mTLS");
    assert_eq!(unary(&ch).await.expect("unary"), "s2");
    let n = within(5, logs.recv(&mut buf)).await.expect("log line");
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "/O=Example/CN=admin 0 admin"
    );
}

/// A server whose certificate is not signed by the ca-file is never used:
/// calls get UNAVAILABLE naming the TLS failure; `verify none` connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificates_are_verified() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    let rogue = Ca::new("Rogue CA");
    let (sc, sk) = rogue.leaf(&["127.0.0.1"], "server", false);
    let backend = tls_echo("rogue", &sc, &sk).await;
    let ca_file = f.write("ca.pem", &ca.pem());
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 5s\nfrontend fe\n    bind 127.0.0.1:0\n    default_backend be\nbackend be\n    server s1 {backend} proto h2 ssl ca-file {}\n",
        show(&ca_file)
    );
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    let ch = channel(fe_addr(&proxy)).await;
    let err = unary(&ch).await.expect_err("not verified");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("TLS"), "{err:?}");
    assert_eq!(
        proxy.backend("be").expect("be").servers[0]
            .state
            .total
            .load(std::sync::atomic::Ordering::Relaxed),
        4,
        "the first attempt and HAProxy's default 3 retries on conn-failure"
    );
    let cfg = cfg.replace("ssl ca-file", "ssl verify none ca-file");
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    let ch = channel(fe_addr(&proxy)).await;
    assert_eq!(unary(&ch).await.expect("verify none"), "rogue");
}

/// Health checks over TLS: a native gRPC check passes on a verified server;
/// a connect check with TLS fails at layer 6 on an untrusted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_over_tls() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    let rogue = Ca::new("Rogue CA");
    let (sc, sk) = ca.leaf(&["127.0.0.1"], "server", false);
    let good = tls_echo("good", &sc, &sk).await;
    let (rc, rk) = rogue.leaf(&["127.0.0.1"], "server", false);
    let bad = tls_echo("bad", &rc, &rk).await;
    let ca_file = f.write("ca.pem", &ca.pem());
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout check 2s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    option grpc-check\n    server s1 {good} proto h2 ssl ca-file {ca} check inter 100ms rise 1 fall 1\n\
         backend be2\n    server s2 {bad} proto h2 check-ssl ca-file {ca} check inter 100ms rise 1 fall 1\n",
        ca = show(&ca_file)
    );
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    wait_for(10, "gRPC check over TLS runs", || {
        last_reason(&proxy, "s1").starts_with("Layer7 check passed")
    })
    .await;
    assert!(server_up(&proxy, "be", "s1"));
    wait_for(10, "s2 goes down", || !server_up(&proxy, "be2", "s2")).await;
    let s2 = server(&proxy, "be2", "s2");
    let reason = s2
        .state
        .health
        .lock()
        .expect("lock")
        .last
        .as_ref()
        .map(|l| l.reason.clone())
        .unwrap_or_default();
    assert!(reason.starts_with("Layer6 invalid response"), "{reason}");
    assert!(reason.contains("TLS handshake"), "{reason}");
}

/// `mode tcp` with `bind ... ssl`: TLS offload in front of a cleartext
/// gRPC server. With `option splice-*` too: the bytes are decrypted in user
/// space, so nothing can be spliced and the session works as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_offload_in_tcp_mode_with_and_without_splice() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    let (fc, fk) = ca.leaf(&["localhost"], "weir", false);
    let cert = f.write("cert.pem", &format!("{fc}{fk}"));
    let servers = echo_servers(1).await;
    for splice in [
        "",
        "    option splice-request\n    option splice-response\n",
    ] {
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n{splice}frontend fe\n    bind 127.0.0.1:0 ssl crt {} alpn h2\n    default_backend be\nbackend be\n    server s1 {}\n",
            show(&cert),
            servers[0].addr
        );
        let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
        let ch = tls_channel(fe_addr(&proxy), &ca.pem(), "localhost", None)
            .await
            .expect("TLS");
        all_kinds(&ch, "s1").await;
        let fe = proxy.stats().frontend("fe");
        assert_eq!(
            fe.spliced_bytes.load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
}

/// `sni <expression>`: the name sent to the server comes from the request,
/// one connection pool per name; the server picks its certificate by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sni_from_the_request() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    for name in ["a.test", "b.test"] {
        let (c, k) = ca.leaf(&[name], name, false);
        f.write(&format!("certs/{name}.pem"), &format!("{c}{k}"));
    }
    let ca_file = f.write("ca.pem", &ca.pem());
    // The "server": another weir that answers with the SNI it received.
    let inner = format!(
        "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:0 ssl crt {} alpn h2\n    http-request return status 200 content-type text/plain lf-string \"sni=%[ssl_fc_sni]\"\n    default_backend be\nbackend be\n",
        show(&f.path("certs"))
    );
    let inner = weir::proxy::start(load(&inner).config)
        .await
        .expect("inner starts");
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 5s\nfrontend fe\n    bind 127.0.0.1:0\n    default_backend be\nbackend be\n    server s1 {} proto h2 ssl ca-file {} sni req.hdr(x-sni)\n",
        fe_addr(&inner),
        show(&ca_file)
    );
    let proxy = weir::proxy::start(load(&cfg).config).await.expect("starts");
    let addr = fe_addr(&proxy);
    for name in ["a.test", "b.test", "a.test"] {
        let (status, body) = h2_get(addr, &[("x-sni", name)]).await;
        assert_eq!((status, body), (200, format!("sni={name}")));
    }
    // One pool per name: two connections, not three.
    let s1 = server(&proxy, "be", "s1");
    assert_eq!(s1.h2_for(Some("a.test")).connections_opened(), 1);
    assert_eq!(s1.h2_for(Some("b.test")).connections_opened(), 1);
    // A name the server has no certificate for fails verification.
    let (status, body) = h2_get(addr, &[("x-sni", "c.test")]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("TLS"), "{body}");
}

/// A plain HTTP/2 GET (prior knowledge); returns status and body.
async fn h2_get(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, String) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let mut b = http::Request::builder().uri(format!("http://{addr}/x"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .expect("request");
    let resp = within(10, tx.send_request(req)).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------- config errors

fn errors(cfg: &str) -> Vec<String> {
    match weir::config::parse_str("weir.cfg", cfg) {
        Ok(_) => panic!("loaded but should not:\n{cfg}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn bad_certificate_files_are_errors_at_their_line() {
    let f = Files::new();
    let ca = Ca::new("Test CA");
    let (c1, k1) = ca.leaf(&["localhost"], "one", false);
    let (_c2, k2) = ca.leaf(&["localhost"], "two", false);
    let no_key = f.write("nokey.pem", &c1);
    let mismatch = f.write("mismatch.pem", &format!("{c1}{k2}"));
    let good = f.write("good.pem", &format!("{c1}{k1}"));
    let missing = f.path("missing.pem");
    let cfg = |crt: &Path| {
        format!(
            "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:0 ssl crt {}\n    default_backend be\nbackend be\n    server s1 127.0.0.1:1 proto h2\n",
            show(crt)
        )
    };
    let e = errors(&cfg(&no_key));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("parsing [weir.cfg:4] : 'bind' : "),
        "{}",
        e[0]
    );
    assert!(
        e[0].contains(&show(&no_key)) && e[0].contains("no private key"),
        "{}",
        e[0]
    );
    let e = errors(&cfg(&mismatch));
    assert!(
        e[0].contains(&show(&mismatch)) && e[0].contains("does not match"),
        "{}",
        e[0]
    );
    let e = errors(&cfg(&missing));
    assert!(e[0].contains(&show(&missing)), "{}", e[0]);
    load(&cfg(&good));
    // ssl without crt, TLS options without ssl, server verify without a CA.
    let e = errors(&cfg(&good).replace(&format!("ssl crt {}", show(&good)), "ssl"));
    assert_eq!(
        e,
        ["parsing [weir.cfg:4] : 'bind' : 'ssl' needs at least one 'crt <file|dir>'"]
    );
    let e = errors(&cfg(&good).replace(&format!("ssl crt {}", show(&good)), "alpn h2"));
    assert_eq!(e, ["parsing [weir.cfg:4] : 'bind' : TLS options (crt, alpn, ca-file, verify, ...) need 'ssl' on the same line"]);
    let e = errors(&cfg(&good).replace("proto h2\n", "proto h2 ssl\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("parsing [weir.cfg:7] : 'server' : ") && e[0].contains("ca-file"),
        "{}",
        e[0]
    );
    let e = errors(&cfg(&good).replace("proto h2\n", "ssl sni req.hdr(host) verify none\n"));
    assert!(
        e[0].contains("'sni <expression>' needs an HTTP/2 server"),
        "{}",
        e[0]
    );
    let e = errors(&cfg(&good).replace("proto h2\n", "proto h2 ssl sni nosuchfetch verify none\n"));
    assert!(
        e[0].contains("'sni' : unknown fetch method 'nosuchfetch'"),
        "{}",
        e[0]
    );
    let e = errors(&cfg(&good).replace("alpn", "").replace(
        &format!("crt {}", show(&good)),
        &format!("crt {} ssl-min-ver TLSv1.0", show(&good)),
    ));
    assert!(e[0].contains("'TLSv1.0' is not supported"), "{}", e[0]);
}
