//! Reload without dropping streams (issue 7) and certificate reload
//! (issue 5): `Running::reload` in process, and SIGHUP to the `weir` binary.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use weir_echo::pb::EchoRequest;

fn cfg(port: u16, server: SocketAddr, extra: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
         backend be\n{extra}    server s1 {server} proto h2\n"
    )
}

async fn who(addr: SocketAddr) -> String {
    let mut c = echo_client(addr).await;
    c.unary(EchoRequest::default())
        .await
        .expect("unary")
        .into_inner()
        .server
}

/// New calls follow the new configuration; a stream open during the reload
/// finishes on the old one, every message delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_routes_new_calls_and_lets_streams_finish() {
    let old = echo_servers(1).await;
    let new = weir_echo::EchoHandle::spawn(any_addr(), "t1")
        .await
        .expect("echo");
    let port = free_port();
    let mut proxy = weir::proxy::start(load_config(&cfg(port, old[0].addr, "")))
        .await
        .expect("starts");
    let addr = fe_addr(&proxy);
    assert_eq!(who(addr).await, "s1");

    let mut c = echo_client(addr).await;
    let mut stream = stream_started(&mut c, 20, 50).await;

    proxy
        .reload(load_config(&cfg(port, new.addr, "")))
        .await
        .expect("reload");
    assert_eq!(proxy.reloads(), 1);
    assert_eq!(fe_addr(&proxy), addr, "same socket");

    let mut got = 1;
    while let Some(m) = within(10, stream.message()).await.expect("message") {
        assert_eq!(m.server, "s1");
        got += 1;
    }
    assert_eq!(got, 20, "the stream finished on the old configuration");
    assert_eq!(who(addr).await, "t1", "a new connection uses the new one");
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// Connections keep being accepted while reloads happen: none refused, no
/// call failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_is_refused_during_reloads() {
    let servers = echo_servers(2).await;
    let port = free_port();
    let mut proxy = weir::proxy::start(load_config(&cfg(port, servers[0].addr, "")))
        .await
        .expect("starts");
    let addr = fe_addr(&proxy);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load_tasks = Vec::new();
    for _ in 0..4 {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        load_tasks.push(tokio::spawn(async move {
            // A new connection per call, bounded in count.
            for _ in 0..400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = async {
                    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                        .ok()?
                        .connect()
                        .await
                        .ok()?;
                    let mut c = weir_echo::pb::echo_client::EchoClient::new(ch);
                    c.unary(EchoRequest::default()).await.ok()
                }
                .await;
                match r {
                    Some(_) => ok.fetch_add(1, Ordering::Relaxed),
                    None => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let server = servers[i % 2].addr;
        proxy
            .reload(load_config(&cfg(port, server, "")))
            .await
            .expect("reload");
    }
    stop.store(true, Ordering::Relaxed);
    for t in load_tasks {
        within(30, t).await.expect("load task");
    }
    assert_eq!(proxy.reloads(), 10);
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "calls ran: {}",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no call failed during reloads"
    );
}

/// A server marked DOWN by its checks stays DOWN across a reload, whether
/// its object is carried over (unchanged settings) or rebuilt (new weight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_health_is_carried_over() {
    // A closed port: connection refused.
    let dead = {
        let l = std::net::TcpListener::bind(ANY).expect("bind");
        l.local_addr().expect("addr")
    };
    let port = free_port();
    let checked = |extra: &str| {
        format!(
            "defaults\n    mode http\n    timeout connect 1s\n\
             frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
             backend be\n    server s1 {dead} proto h2 check inter 10s fall 1 {extra}\n"
        )
    };
    let mut proxy = weir::proxy::start(load_config(&checked("")))
        .await
        .expect("starts");
    wait_for(10, "s1 down", || !server_up(&proxy, "be", "s1")).await;
    let before = server(&proxy, "be", "s1");
    proxy
        .reload(load_config(&checked("")))
        .await
        .expect("reload");
    let after = server(&proxy, "be", "s1");
    assert!(
        Arc::ptr_eq(&before, &after),
        "unchanged server carried over"
    );
    assert!(!after.is_up());
    proxy
        .reload(load_config(&checked("weight 5")))
        .await
        .expect("reload");
    let rebuilt = server(&proxy, "be", "s1");
    assert!(!Arc::ptr_eq(&before, &rebuilt));
    assert!(!rebuilt.is_up(), "a rebuilt server inherits DOWN");
}

/// A reload that cannot bind keeps the old configuration running.
#[tokio::test]
async fn failed_reload_changes_nothing() {
    let servers = echo_servers(1).await;
    let port = free_port();
    let mut proxy = weir::proxy::start(load_config(&cfg(port, servers[0].addr, "")))
        .await
        .expect("starts");
    let taken = std::net::TcpListener::bind(ANY).expect("bind");
    let busy = taken.local_addr().expect("addr");
    let bad = format!(
        "{}frontend fe2\n    bind {busy}\n    default_backend be\n",
        cfg(port, servers[0].addr, "")
    );
    let err = proxy
        .reload(load_config(&bad))
        .await
        .expect_err("port in use");
    assert!(err.to_string().contains("cannot bind"), "{err}");
    assert_eq!(proxy.reloads(), 0);
    assert_eq!(who(fe_addr(&proxy)).await, "s1");
}

/// The binary: SIGHUP with an invalid file keeps the old configuration and
/// logs every error; with a valid one (sent by `weir reload -p`) the new
/// configuration takes over; SIGTERM exits 0 and removes the pid file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary() {
    use tokio::io::AsyncBufReadExt;
    let old = echo_servers(1).await;
    let new = weir_echo::EchoHandle::spawn(any_addr(), "t1")
        .await
        .expect("echo");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weir.cfg");
    std::fs::write(&path, cfg(port, old[0].addr, "")).expect("write");
    let pidfile = dir.path().join("weir.pid");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-f")
        .arg(&path)
        .arg("-p")
        .arg(&pidfile)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("weir starts");
    let pid = child.id().expect("pid").to_string();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    macro_rules! wait_line {
        ($what:expr) => {
            within(20, async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains($what) {
                        return line;
                    }
                }
                panic!("weir ended before logging '{}'", $what);
            })
            .await
        };
    }
    wait_line!("listening");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_eq!(who(addr).await, "s1");

    std::fs::write(
        &path,
        "frontend fe\n    bind 127.0.0.1:1\n    balance fastest\n",
    )
    .expect("write");
    let hup = |pid: &str| {
        std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
            .expect("kill -HUP")
    };
    hup(&pid);
    let alert = wait_line!("[ALERT]");
    assert!(
        alert.contains("'balance' is not allowed in 'frontend' section"),
        "{alert}"
    );
    wait_line!("reload refused");
    assert_eq!(who(addr).await, "s1", "still the old configuration");

    // `weir reload -p <pidfile>` is the same SIGHUP.
    std::fs::write(&path, cfg(port, new.addr, "")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["reload", "-p"])
        .arg(&pidfile)
        .output()
        .expect("weir reload");
    assert!(out.status.success(), "{out:?}");
    wait_line!("reloaded");
    assert_eq!(who(addr).await, "t1");

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let status = within(20, child.wait()).await.expect("exit");
    assert!(status.success(), "{status:?}");
    assert!(!pidfile.exists(), "the pid file is removed at exit");
    // Nothing to signal any more: a clear error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["reload", "-p"])
        .arg(&pidfile)
        .output()
        .expect("weir reload");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// Certificates are read again on reload: new connections get the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reads_certificates_again() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("ca");
        (cert, key)
    };
    let leaf = |ca: &(rcgen::Certificate, KeyPair)| {
        let p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &ca.0, &ca.1).expect("leaf");
        format!("{}{}", cert.pem(), key.serialize_pem())
    };
    let (ca1, ca2) = (ca("CA one"), ca("CA two"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("weir.pem");
    std::fs::write(&pem, leaf(&ca1)).expect("write");
    let servers = echo_servers(1).await;
    let port = free_port();
    let text = format!(
        "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:{port} ssl crt {}\n    default_backend be\nbackend be\n    server s1 {} proto h2\n",
        pem.display(),
        servers[0].addr
    );
    let mut proxy = weir::proxy::start(load_config(&text))
        .await
        .expect("starts");
    let call = |ca_pem: String| async move {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
            .domain_name("localhost");
        let ch = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
            .ok()?
            .tls_config(tls)
            .ok()?
            .connect()
            .await
            .ok()?;
        let mut c = weir_echo::pb::echo_client::EchoClient::new(ch);
        c.unary(EchoRequest::default())
            .await
            .ok()
            .map(|r| r.into_inner().server)
    };
    assert_eq!(call(ca1.0.pem()).await.as_deref(), Some("s1"));
    assert_eq!(call(ca2.0.pem()).await, None);
    std::fs::write(&pem, leaf(&ca2)).expect("write");
    proxy.reload(load_config(&text)).await.expect("reload");
    assert_eq!(
        call(ca2.0.pem()).await.as_deref(),
        Some("s1"),
        "new certificate"
    );
    assert_eq!(call(ca1.0.pem()).await, None);
}
