use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::net::{TcpListener, TcpStream};

use super::*;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf for `names` signed by `ca`, as (certificate PEM, key PEM).
fn leaf_with(ca: &Ca, p: CertificateParams) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert, key)
}

fn leaf(ca: &Ca, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
    let p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    leaf_with(ca, p)
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn pem_of(cert: &rcgen::Certificate, key: &KeyPair) -> String {
    format!("{}{}", cert.pem(), key.serialize_pem())
}

fn bind_opts(crts: Vec<PathBuf>) -> BindSsl {
    BindSsl {
        crts,
        alpn: vec!["h2".into(), "http/1.1".into()],
        ..Default::default()
    }
}

fn bind_err(opts: &BindSsl) -> String {
    BindTls::build(opts).unwrap_err()
}

// ---- build errors ----

#[test]
fn missing_crt_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.pem");
    let e = bind_err(&bind_opts(vec![p.clone()]));
    assert!(
        e.starts_with(&format!(
            "unable to load SSL certificate file '{}': ",
            p.display()
        )),
        "{e}"
    );
}

#[test]
fn crt_without_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let p = write(dir.path(), "k.pem", &key.serialize_pem());
    let e = bind_err(&bind_opts(vec![p.clone()]));
    assert_eq!(e, format!("no certificate found in '{}'", p.display()));
}

#[test]
fn crt_without_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("CA");
    let (cert, _) = leaf(&ca, &["a.test"]);
    let p = write(dir.path(), "c.pem", &cert.pem());
    let e = bind_err(&bind_opts(vec![p.clone()]));
    assert_eq!(
        e,
        format!(
            "no private key found in '{}' (the PEM file must hold the certificate and its key)",
            p.display()
        )
    );
}

#[test]
fn crt_with_mismatched_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("CA");
    let (cert, _) = leaf(&ca, &["a.test"]);
    let other = KeyPair::generate().unwrap();
    let p = write(dir.path(), "c.pem", &pem_of(&cert, &other));
    let e = bind_err(&bind_opts(vec![p.clone()]));
    assert_eq!(
        e,
        format!(
            "the private key in '{}' does not match its certificate",
            p.display()
        )
    );
    // The same on a server line.
    let e = ServerTls::build(&ServerSsl {
        verify: false,
        crt: Some(p.clone()),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        e,
        format!(
            "the private key in '{}' does not match its certificate",
            p.display()
        )
    );
}

#[test]
fn garbage_key_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("CA");
    let (cert, _) = leaf(&ca, &["a.test"]);
    let junk = "-----BEGIN PRIVATE KEY-----\nAAECAwQ=\n-----END PRIVATE KEY-----\n";
    let p = write(dir.path(), "c.pem", &format!("{}{junk}", cert.pem()));
    let e = bind_err(&bind_opts(vec![p.clone()]));
    assert!(
        e.starts_with(&format!("unsupported private key in '{}': ", p.display())),
        "{e}"
    );
}

#[test]
fn empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "readme.txt", "not a cert");
    let e = bind_err(&bind_opts(vec![dir.path().to_path_buf()]));
    assert_eq!(
        e,
        format!("no '.pem' file in directory '{}'", dir.path().display())
    );
}

#[test]
fn verify_needs_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("CA");
    let (cert, key) = leaf(&ca, &["a.test"]);
    let p = write(dir.path(), "a.pem", &pem_of(&cert, &key));
    for (v, word) in [
        (Verify::Required, "required"),
        (Verify::Optional, "optional"),
    ] {
        let mut o = bind_opts(vec![p.clone()]);
        o.verify = v;
        assert_eq!(
            bind_err(&o),
            format!("'verify {word}' needs a 'ca-file' to check client certificates against")
        );
    }
    // verify none ignores the CA file, even a missing one.
    let mut o = bind_opts(vec![p.clone()]);
    o.ca_file = Some(dir.path().join("missing-ca.pem"));
    assert!(BindTls::build(&o).is_ok());
    // A missing CA file with verify required.
    o.verify = Verify::Required;
    let e = bind_err(&o);
    assert!(e.starts_with("unable to load CA file '"), "{e}");
}

#[test]
fn server_verify_needs_ca_file() {
    let e = ServerTls::build(&ServerSsl::default()).unwrap_err();
    assert!(
        e.starts_with("verify is enabled by default but no CA file specified"),
        "{e}"
    );
    assert!(ServerTls::build(&ServerSsl {
        verify: false,
        ..Default::default()
    })
    .is_ok());
}

#[test]
fn min_above_max() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("CA");
    let (cert, key) = leaf(&ca, &["a.test"]);
    let p = write(dir.path(), "a.pem", &pem_of(&cert, &key));
    let mut o = bind_opts(vec![p]);
    o.min_ver = Some(TlsVersion::Tls13);
    o.max_ver = Some(TlsVersion::Tls12);
    assert_eq!(
        bind_err(&o),
        "ssl-min-ver TLSv1.3 is above ssl-max-ver TLSv1.2"
    );
    let e = ServerTls::build(&ServerSsl {
        verify: false,
        min_ver: Some(TlsVersion::Tls13),
        max_ver: Some(TlsVersion::Tls12),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e, "ssl-min-ver TLSv1.3 is above ssl-max-ver TLSv1.2");
}

#[test]
fn ciphersuites() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("CA");
    let (cert, key) = leaf(&ca, &["a.test"]);
    let p = write(dir.path(), "a.pem", &pem_of(&cert, &key));
    let mut o = bind_opts(vec![p]);
    o.ciphersuites = Some("TLS_AES_128_GCM_SHA256:TLS_BOGUS".into());
    let e = bind_err(&o);
    assert!(
        e.starts_with("unknown cipher suite 'TLS_BOGUS' (known: TLS_AES_256_GCM_SHA384, "),
        "{e}"
    );
    assert!(e.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), "{e}");
    // Every spelling is accepted.
    o.ciphersuites = Some(
        "TLS_AES_128_GCM_SHA256:TLS13_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
            .into(),
    );
    assert!(BindTls::build(&o).is_ok());
    // TLS 1.3 suites only, with TLS 1.3 turned off: nothing usable... but
    // TLS 1.2 keeps its defaults, so it still builds.
    o.ciphersuites = Some("TLS_AES_128_GCM_SHA256".into());
    o.max_ver = Some(TlsVersion::Tls12);
    assert!(BindTls::build(&o).is_ok());
    o.ciphersuites = Some(" : ".into());
    assert_eq!(bind_err(&o), "empty cipher suite list");
}

#[test]
fn ciphersuites_per_version() {
    let mut p = rustls::crypto::ring::default_provider();
    params::apply_ciphersuites(&mut p, "TLS_CHACHA20_POLY1305_SHA256").unwrap();
    let names: Vec<String> = p.cipher_suites.iter().map(params::iana_name).collect();
    assert_eq!(names[0], "TLS_CHACHA20_POLY1305_SHA256");
    assert!(!names.contains(&"TLS_AES_128_GCM_SHA256".to_string()));
    assert_eq!(names.len(), 7, "{names:?}"); // 1 TLS 1.3 + 6 TLS 1.2
}

#[test]
fn expired_certificate_warns() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("CA");
    let mut params = CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let (cert, key) = leaf_with(&ca, params);
    let p = write(dir.path(), "old.pem", &pem_of(&cert, &key));
    let (_, warnings) = BindTls::build(&bind_opts(vec![p.clone()])).unwrap();
    assert_eq!(
        warnings,
        vec![format!(
            "certificate '{}' expired on Jan  1 00:00:00 2020 GMT",
            p.display()
        )]
    );
    let mut params = CertificateParams::new(vec!["new.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2999, 1, 1);
    params.not_after = rcgen::date_time_ymd(3000, 1, 1);
    let (cert, key) = leaf_with(&ca, params);
    let p = write(dir.path(), "new.pem", &pem_of(&cert, &key));
    let (_, warnings) = BindTls::build(&bind_opts(vec![p.clone()])).unwrap();
    assert_eq!(
        warnings,
        vec![format!(
            "certificate '{}' is not valid before Jan  1 00:00:00 2999 GMT",
            p.display()
        )]
    );
}

#[test]
fn dn_formatting() {
    let ca = ca("Test CA");
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CountryName, "FR");
    p.distinguished_name
        .push(DnType::OrganizationName, "Example");
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, "Ops");
    p.distinguished_name.push(DnType::CommonName, "client1");
    let (cert, _) = leaf_with(&ca, p);
    let (s, i) = dn::subject_issuer(cert.der()).unwrap();
    assert_eq!(s, "/C=FR/O=Example/OU=Ops/CN=client1");
    assert_eq!(i, "/CN=Test CA");
}

// ---- handshakes over loopback ----

/// Accepts one connection with `bind`; returns what `accept` gave.
async fn serve_one(
    bind: BindTls,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<Result<crate::acl::TlsInfo, String>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let (stream, info) = bind.accept(tcp, Duration::from_secs(5)).await?;
        // Keep the connection until the client is done with it.
        let mut stream = stream;
        let mut buf = [0u8; 1];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
        Ok(info)
    });
    (addr, h)
}

/// Connects with `client` and `sni`; returns the server certificate seen
/// and the negotiated ALPN, then closes.
async fn client_one(
    client: &ServerTls,
    addr: SocketAddr,
    sni: &str,
) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut s, alpn) = client.connect(tcp, sni).await?;
    let peer = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    // TLS 1.3 client auth is judged by the server after the client's
    // handshake ends: a read tells whether the server kept the connection.
    tokio::io::AsyncWriteExt::shutdown(&mut s).await.ok();
    let mut buf = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
        .await
        .map_err(|e| format!("after handshake: {e}"))?;
    Ok((peer, alpn))
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ca_file: PathBuf,
    a_der: Vec<u8>,
    b_der: Vec<u8>,
    ca: Ca,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let ca = ca("Test CA");
    let ca_file = write(&d, "ca.crt", &ca.cert.pem());
    let certs = d.join("certs");
    std::fs::create_dir(&certs).unwrap();
    let (a, ak) = leaf(&ca, &["a.test"]);
    let (b, bk) = leaf(&ca, &["b.test", "*.wild.test"]);
    write(&certs, "10-a.pem", &pem_of(&a, &ak));
    write(&certs, "20-b.pem", &pem_of(&b, &bk));
    write(&certs, "notes.txt", "ignored");
    Setup {
        _dir: dir,
        dir: d,
        ca_file,
        a_der: a.der().to_vec(),
        b_der: b.der().to_vec(),
        ca,
    }
}

#[tokio::test]
async fn sni_selection_and_alpn() {
    let s = setup();
    let (bind, warnings) = BindTls::build(&bind_opts(vec![s.dir.join("certs")])).unwrap();
    assert!(warnings.is_empty());
    let client = ServerTls::build(&ServerSsl {
        ca_file: Some(s.ca_file.clone()),
        alpn: vec!["h2".into()],
        ..Default::default()
    })
    .unwrap()
    .0;

    // SNI b.test: b's certificate, verified, h2.
    let (addr, h) = serve_one(bind.clone()).await;
    let (peer, alpn) = client_one(&client, addr, "b.test").await.unwrap();
    assert_eq!(peer, s.b_der);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let info = h.await.unwrap().unwrap();
    assert_eq!(info.sni.as_deref(), Some("b.test"));
    assert_eq!(info.alpn.as_deref(), Some("h2"));
    assert_eq!(info.version, Some("TLSv1.3"));
    assert_eq!(info.client_subject, None);

    // Case-insensitive, wildcard.
    let (addr, h) = serve_one(bind.clone()).await;
    let (peer, _) = client_one(&client, addr, "X.Wild.Test").await.unwrap();
    assert_eq!(peer, s.b_der);
    h.await.unwrap().unwrap();

    // Unknown SNI: the default (first) certificate, which does not verify.
    let (addr, h) = serve_one(bind.clone()).await;
    let e = client_one(&client, addr, "c.test").await.unwrap_err();
    assert!(e.starts_with("TLS handshake with c.test failed: "), "{e}");
    let _ = h.await;
    let no_verify = ServerTls::build(&ServerSsl {
        verify: false,
        ..Default::default()
    })
    .unwrap()
    .0;
    let (addr, h) = serve_one(bind.clone()).await;
    let (peer, alpn) = client_one(&no_verify, addr, "c.test").await.unwrap();
    assert_eq!(peer, s.a_der);
    assert_eq!(alpn, None);
    let info = h.await.unwrap().unwrap();
    assert_eq!(info.alpn, None);

    // No SNI (IP address): the default certificate; TLS 1.2 forced.
    let client12 = ServerTls::build(&ServerSsl {
        verify: false,
        max_ver: Some(TlsVersion::Tls12),
        alpn: vec!["http/1.1".into()],
        ..Default::default()
    })
    .unwrap()
    .0;
    let (addr, h) = serve_one(bind.clone()).await;
    let (peer, alpn) = client_one(&client12, addr, "127.0.0.1").await.unwrap();
    assert_eq!(peer, s.a_der);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let info = h.await.unwrap().unwrap();
    assert_eq!(info.sni, None);
    assert_eq!(info.version, Some("TLSv1.2"));
    assert_eq!(info.alpn.as_deref(), Some("http/1.1"));
}

#[tokio::test]
async fn server_verify_against_wrong_ca() {
    let s = setup();
    let (bind, _) = BindTls::build(&bind_opts(vec![s.dir.join("certs")])).unwrap();
    let other = ca("Other CA");
    let other_file = write(&s.dir, "other.crt", &other.cert.pem());
    let client = ServerTls::build(&ServerSsl {
        ca_file: Some(other_file),
        ..Default::default()
    })
    .unwrap()
    .0;
    let (addr, h) = serve_one(bind.clone()).await;
    let e = client_one(&client, addr, "b.test").await.unwrap_err();
    assert!(e.starts_with("TLS handshake with b.test failed: "), "{e}");
    let _ = h.await;

    let client = ServerTls::build(&ServerSsl {
        verify: false,
        ..Default::default()
    })
    .unwrap()
    .0;
    let (addr, h) = serve_one(bind).await;
    client_one(&client, addr, "b.test").await.unwrap();
    h.await.unwrap().unwrap();
}

#[tokio::test]
async fn mutual_tls() {
    let s = setup();
    let mut o = bind_opts(vec![s.dir.join("certs")]);
    o.verify = Verify::Required;
    o.ca_file = Some(s.ca_file.clone());
    let (bind, _) = BindTls::build(&o).unwrap();

    // A good client certificate.
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, "Example");
    p.distinguished_name.push(DnType::CommonName, "client1");
    let (c, ck) = leaf_with(&s.ca, p);
    let good = write(&s.dir, "client1.pem", &pem_of(&c, &ck));
    // One from another CA.
    let other = ca("Other CA");
    let (c, ck) = leaf(&other, &["client2"]);
    let bad = write(&s.dir, "client2.pem", &pem_of(&c, &ck));

    let client = |crt: Option<PathBuf>| {
        ServerTls::build(&ServerSsl {
            ca_file: Some(s.ca_file.clone()),
            crt,
            ..Default::default()
        })
        .unwrap()
        .0
    };

    for crt in [None, Some(bad)] {
        let before = HANDSHAKE_FAILURES.load(Ordering::Relaxed);
        let (addr, h) = serve_one(bind.clone()).await;
        let r = client_one(&client(crt.clone()), addr, "a.test").await;
        assert!(r.is_err(), "{crt:?}");
        let e = h.await.unwrap().unwrap_err();
        let want = if crt.is_some() {
            "TLS handshake failed: invalid peer certificate: UnknownIssuer"
        } else {
            "TLS handshake failed: peer sent no certificates"
        };
        assert_eq!(e, want);
        assert!(HANDSHAKE_FAILURES.load(Ordering::Relaxed) > before);
    }

    let (addr, h) = serve_one(bind.clone()).await;
    client_one(&client(Some(good.clone())), addr, "a.test")
        .await
        .unwrap();
    let info = h.await.unwrap().unwrap();
    assert_eq!(
        info.client_subject.as_deref(),
        Some("/O=Example/CN=client1")
    );
    assert_eq!(info.client_issuer.as_deref(), Some("/CN=Test CA"));

    // verify optional: no certificate is fine, a bad one is not.
    o.verify = Verify::Optional;
    let (bind, _) = BindTls::build(&o).unwrap();
    let (addr, h) = serve_one(bind.clone()).await;
    client_one(&client(None), addr, "a.test").await.unwrap();
    let info = h.await.unwrap().unwrap();
    assert_eq!(info.client_subject, None);
    let (addr, h) = serve_one(bind).await;
    client_one(&client(Some(good)), addr, "a.test")
        .await
        .unwrap();
    let info = h.await.unwrap().unwrap();
    assert_eq!(
        info.client_subject.as_deref(),
        Some("/O=Example/CN=client1")
    );
}

#[tokio::test]
async fn handshake_timeout() {
    let s = setup();
    let (bind, _) = BindTls::build(&bind_opts(vec![s.dir.join("certs")])).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _idle = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = l.accept().await.unwrap();
    let before = HANDSHAKE_FAILURES.load(Ordering::Relaxed);
    let e = bind
        .accept(tcp, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(e, "TLS handshake timed out after 50ms");
    assert!(HANDSHAKE_FAILURES.load(Ordering::Relaxed) > before);
}
