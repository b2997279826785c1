//! `mode tcp`: byte-exact forwarding, half-close, per-connection round
//! robin, inactivity timeouts, tcplog lines, and a gRPC client over L4.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_echo::pb::EchoRequest;

/// Writes its name to each connection, then closes.
async fn name_server(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind(ANY).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..256 {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let _ = s.write_all(name.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    addr
}

fn tcp_config(servers: &[(&str, SocketAddr)], extra_defaults: &str) -> String {
    let lines: String = servers
        .iter()
        .map(|(n, a)| format!("    server {n} {a}\n"))
        .collect();
    format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n{extra_defaults}\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    balance roundrobin\n{lines}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_byte_exact_both_ways() {
    let srv = tcp_echo_server().await;
    let proxy = start_proxy(&tcp_config(&[("s1", srv)], "")).await;
    tcp_echo_exact(fe_addr(&proxy), 100 << 20).await;
}

#[tokio::test]
async fn half_close_still_gets_the_reply() {
    let srv = tcp_echo_server().await;
    let proxy = start_proxy(&tcp_config(&[("s1", srv)], "")).await;
    let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
    c.write_all(b"request then FIN").await.unwrap();
    c.shutdown().await.unwrap(); // our write side is closed...
    let mut reply = Vec::new();
    within(5, c.read_to_end(&mut reply)).await.unwrap(); // ...the reply still arrives
    assert_eq!(reply, b"request then FIN");
}

/// A read that drains the socket clears its readiness (one `recvfrom` less
/// per burst); a FIN that arrived with the bytes must still end the
/// direction. 100 sessions whose bytes and FIN leave together, both ways.
#[tokio::test]
async fn bytes_sent_with_the_fin_arrive_and_end_the_session() {
    let echo = tcp_echo_server().await;
    let named = name_server("short-name").await;
    let proxy = start_proxy(&tcp_config(&[("s1", echo)], "")).await;
    let named_proxy = start_proxy(&tcp_config(&[("s1", named)], "")).await;
    for i in 0..100 {
        let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
        let msg = format!("call {i}");
        c.write_all(msg.as_bytes()).await.unwrap();
        c.shutdown().await.unwrap();
        let mut reply = Vec::new();
        within(5, c.read_to_end(&mut reply)).await.unwrap();
        assert_eq!(reply, msg.as_bytes(), "session {i}");

        let mut c = TcpStream::connect(fe_addr(&named_proxy)).await.unwrap();
        let mut reply = Vec::new();
        within(5, c.read_to_end(&mut reply)).await.unwrap();
        assert_eq!(reply, b"short-name", "session {i}");
    }
}

#[tokio::test]
async fn connections_round_robin_over_three_servers() {
    let servers = [
        ("a", name_server("a").await),
        ("b", name_server("b").await),
        ("c", name_server("c").await),
    ];
    let proxy = start_proxy(&tcp_config(&servers, "")).await;
    let mut seen = HashMap::new();
    for _ in 0..30 {
        let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
        let mut name = String::new();
        within(5, c.read_to_string(&mut name)).await.unwrap();
        *seen.entry(name).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n == 10), "{seen:?}");
}

#[tokio::test]
async fn idle_session_is_closed_but_a_moving_one_lives() {
    let srv = tcp_echo_server().await;
    let proxy = start_proxy(&tcp_config(
        &[("s1", srv)],
        "    timeout client 300ms\n    timeout server 300ms\n",
    ))
    .await;
    moving_then_idle_300ms(fe_addr(&proxy)).await;
}

#[tokio::test]
async fn tcplog_lines_follow_haproxy_layout() {
    let srv = name_server("hello").await;
    let syslog = tokio::net::UdpSocket::bind(ANY).await.unwrap();
    let log_addr = syslog.local_addr().unwrap();
    let cfg = tcp_config(
        &[("srv1", srv)],
        &format!("    log {log_addr} format raw local0\n    option tcplog\n"),
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
    let client_port = c.local_addr().unwrap().port();
    let mut s = String::new();
    c.read_to_string(&mut s).await.unwrap();
    drop(c);
    let mut buf = [0u8; 1024];
    let n = within(5, syslog.recv(&mut buf)).await.unwrap();
    let line = std::str::from_utf8(&buf[..n]).unwrap();
    // 127.0.0.1:PORT [dd/Mon/yyyy:hh:mm:ss.mmm] fe be/srv1 Tw/Tc/Tt B ts ac/fc/bc/sc/rc sq/bq
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 9, "{line}");
    assert_eq!(f[0], format!("127.0.0.1:{client_port}"));
    assert!(
        f[1].starts_with('[') && f[1].ends_with(']') && f[1].len() == 26,
        "{line}"
    );
    assert_eq!(f[2], "fe");
    assert_eq!(f[3], "be/srv1");
    let timers: Vec<i64> = f[4].split('/').map(|t| t.parse().unwrap()).collect();
    assert_eq!(timers.len(), 3);
    assert!(timers.iter().all(|&t| t >= 0), "{line}");
    assert_eq!(f[5], "5", "bytes to the client: {line}");
    assert_eq!(f[6], "--");
    assert_eq!(f[7].split('/').count(), 5);
    assert_eq!(f[8], "0/0");

    // A dead server: termination SC, connect time -1.
    drop(proxy);
    let dead = std::net::TcpListener::bind(ANY)
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = tcp_config(
        &[("gone", dead)],
        &format!("    log {log_addr} format raw local0\n    option tcplog\n"),
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
    let mut rest = Vec::new();
    within(5, c.read_to_end(&mut rest)).await.unwrap();
    let n = within(5, syslog.recv(&mut buf)).await.unwrap();
    let line = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(
        line.contains(" be/gone ") && line.contains("/-1/") && line.contains(" SC "),
        "{line}"
    );
}

#[tokio::test]
async fn grpc_over_l4_sticks_to_one_server_per_connection() {
    let servers = echo_servers(3).await;
    let list: Vec<(&str, SocketAddr)> = vec![
        ("s1", servers[0].addr),
        ("s2", servers[1].addr),
        ("s3", servers[2].addr),
    ];
    let proxy = start_proxy(&tcp_config(&list, "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let mut seen = HashMap::new();
    for _ in 0..30 {
        let r = within(10, client.unary(EchoRequest::default()))
            .await
            .expect("ok");
        *seen.entry(r.into_inner().server).or_insert(0) += 1;
    }
    // L4's nature: one connection, one server (mode http balances per call).
    assert_eq!(seen.len(), 1, "{seen:?}");
}

/// Writes its name on connect, then echoes until EOF (holds the connection).
async fn named_echo(name: &'static str) -> SocketAddr {
    tcp_echo_server_greeting(name).await
}

/// Connects (optionally from a given local IP) and reads the server's name.
async fn who(addr: SocketAddr, from: Option<&str>) -> (TcpStream, String) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    }
    let mut c = sock.connect(addr).await.unwrap();
    let mut name = [0u8; 1];
    within(5, c.read_exact(&mut name)).await.unwrap();
    (c, String::from_utf8_lossy(&name).into_owned())
}

fn algo_config(algo: &str, servers: &[(&str, SocketAddr)], server_extra: &str) -> String {
    let lines: String = servers
        .iter()
        .map(|(n, a)| format!("    server {n} {a} {server_extra}\n"))
        .collect();
    format!(
        "defaults\n    mode tcp\n    timeout connect 2s\nfrontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    balance {algo}\n{lines}"
    )
}

#[tokio::test]
async fn leastconn_sends_new_connections_to_the_least_busy_server() {
    let servers = [
        ("a", named_echo("a").await),
        ("b", named_echo("b").await),
        ("c", named_echo("c").await),
    ];
    let proxy = start_proxy(&algo_config("leastconn", &servers, "")).await;
    let addr = fe_addr(&proxy);
    let (c1, n1) = who(addr, None).await;
    let (_c2, n2) = who(addr, None).await;
    let (_c3, n3) = who(addr, None).await;
    let mut names = vec![n1.clone(), n2, n3];
    names.sort();
    assert_eq!(names, ["a", "b", "c"], "one connection each");
    // The server of c1 becomes the only idle one: it gets the next connection.
    drop(c1);
    let be = proxy.backend("be").unwrap();
    let in_flight = || -> u32 {
        be.servers
            .iter()
            .map(|s| s.state.inflight.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    };
    wait_for(5, "c1's session to end", || in_flight() == 2).await;
    let (_c4, n4) = who(addr, None).await;
    assert_eq!(n4, n1);
}

#[tokio::test]
async fn source_hash_keeps_a_client_ip_on_one_server() {
    let servers = [
        ("a", named_echo("a").await),
        ("b", named_echo("b").await),
        ("c", named_echo("c").await),
    ];
    let proxy = start_proxy(&algo_config("source", &servers, "")).await;
    let addr = fe_addr(&proxy);
    let mut by_ip = HashMap::new();
    for i in 1..=12 {
        let ip = format!("127.0.0.{i}");
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(who(addr, Some(&ip)).await.1);
        }
        assert!(seen.iter().all(|n| *n == seen[0]), "{ip} moved: {seen:?}");
        by_ip.insert(ip, seen[0].clone());
    }
    let distinct: std::collections::HashSet<_> = by_ip.values().collect();
    assert!(
        distinct.len() >= 2,
        "12 client IPs all hashed to one server: {by_ip:?}"
    );
}

#[tokio::test]
async fn first_fills_servers_in_order() {
    let servers = [("a", named_echo("a").await), ("b", named_echo("b").await)];
    let proxy = start_proxy(&algo_config("first", &servers, "maxconn 1")).await;
    let addr = fe_addr(&proxy);
    let (c1, n1) = who(addr, None).await;
    let (_c2, n2) = who(addr, None).await;
    assert_eq!((n1.as_str(), n2.as_str()), ("a", "b"));
    drop(c1);
    let a = server(&proxy, "be", "a");
    wait_for(5, "c1's session to end", || {
        a.state.inflight.load(std::sync::atomic::Ordering::Relaxed) == 0
    })
    .await;
    let (_c3, n3) = who(addr, None).await;
    assert_eq!(n3, "a", "the first server has room again");
}

/// Echo servers on 127.0.0.1, .2 and .3, all on one port.
async fn three_hosts_one_port() -> (Vec<weir_echo::EchoHandle>, u16) {
    for _ in 0..20 {
        let first = weir_echo::EchoHandle::spawn(any_addr(), "srv1")
            .await
            .unwrap();
        let port = first.addr.port();
        let mut all = vec![first];
        for (i, ip) in ["127.0.0.2", "127.0.0.3"].iter().enumerate() {
            match weir_echo::EchoHandle::spawn(
                format!("{ip}:{port}").parse().unwrap(),
                &format!("srv{}", i + 2),
            )
            .await
            {
                Ok(h) => all.push(h),
                Err(_) => break,
            }
        }
        if all.len() == 3 {
            return (all, port);
        }
    }
    panic!("could not bind one port on three loopback addresses");
}

/// examples/tcp-grpc.cfg as shipped (the config plus `option
/// splice-auto`), with its ports swapped for free ones.
#[tokio::test]
async fn the_tcp_grpc_example_spreads_grpc_connections_over_three_servers() {
    let (servers, port) = three_hosts_one_port().await;
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/tcp-grpc.cfg"
    ))
    .unwrap();
    assert!(shipped.contains("option splice-auto"));
    let cfg = shipped
        .replace("127.0.0.1:50050", "127.0.0.1:0")
        .replace(":50051", &format!(":{port}"))
        .replace("port 50051", &format!("port {port}"));
    let proxy = start_proxy(&cfg).await;
    let addr = proxy.local_addr("grpc_frontend").unwrap();
    let mut seen = HashMap::new();
    for _ in 0..6 {
        // A new channel (connection) each time: L4 balances connections.
        let mut client = echo_client(addr).await;
        for _ in 0..3 {
            let r = within(10, client.unary(EchoRequest::default()))
                .await
                .expect("ok");
            *seen.entry(r.into_inner().server).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n == 6), "{seen:?}");
    // A 2 MiB call is bulk data: splice-auto moves it through pipes.
    let mut client = echo_client(addr).await;
    let big = EchoRequest {
        payload: vec![1u8; 2 << 20].into(),
        ..Default::default()
    };
    let r = within(10, client.unary(big)).await.expect("ok");
    assert_eq!(r.into_inner().payload.len(), 2 << 20);
    drop(client);
    let fe = proxy.stats().frontend("grpc_frontend");
    wait_for(5, "spliced bytes", || {
        fe.spliced_bytes.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    drop(servers);
}

/// `use_backend` conditions on connection fetches choose the backend in
/// tcp mode too; HTTP-only rules are ignored with HAProxy's warning.
#[tokio::test]
async fn use_backend_by_source_and_destination_in_tcp_mode() {
    let local = name_server("local").await;
    let other = name_server("other").await;
    let cfg = format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n\
         frontend fe\n    bind 127.0.0.1:0\n    acl from_lo src 127.0.0.0/8\n    acl odd_port dst_port 1\n\
         use_backend be_other if odd_port\n    use_backend be_local if from_lo\n    default_backend be_other\n\
         backend be_local\n    server l {local}\n\
         backend be_other\n    server o {other}\n"
    );
    let proxy = start_proxy(&cfg).await;
    let mut s = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
    let mut got = String::new();
    within(5, s.read_to_string(&mut got)).await.unwrap();
    assert_eq!(got, "local");

    let with_rules = cfg.replace(
        "    default_backend be_other\n",
        "    default_backend be_other\n    http-request deny\n",
    );
    let loaded = weir::config::parse_str("weir.cfg", &with_rules).expect("loads");
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["parsing [weir.cfg:4] : 'http-request' rules ignored for frontend 'fe' as they require HTTP mode"]
    );
}
