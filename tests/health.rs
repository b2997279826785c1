//! Active health checks, part 1: the scheduler, the default TCP connect
//! check, rise/fall, state-change logs, backup servers, and the data path
//! avoiding DOWN servers. Real sockets on 127.0.0.1 with `inter 100ms`:
//! tokio's paused time does not move real connects, so tests wait for
//! conditions with bounded polling loops (`wait_for`) instead.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tonic::Code;
use weir_echo::pb::EchoRequest;

/// An http-mode config whose servers (`s1`..) all have `check <extra>`.
fn checked_http(servers: &[SocketAddr], extra: &str, backend_extra: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n{backend_extra}{}",
        server_lines(servers, &format!("check inter 100ms {extra}"))
    )
}

#[tokio::test]
async fn down_server_gets_no_calls() {
    let mut servers = echo_servers(2).await;
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let proxy = start_proxy(&checked_http(&addrs, "fall 2", "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    // Both serve while up.
    for _ in 0..4 {
        within(5, client.unary(EchoRequest::default()))
            .await
            .expect("call");
    }
    assert!(servers[0].stats.calls() > 0 && servers[1].stats.calls() > 0);

    let s1 = servers.remove(0);
    s1.kill().await;
    wait_for(5, "s1 DOWN", || !server_up(&proxy, "be", "s1")).await;
    let before = servers[0].stats.calls();
    for _ in 0..20 {
        within(5, client.unary(EchoRequest::default()))
            .await
            .expect("every call succeeds on s2");
    }
    assert_eq!(servers[0].stats.calls(), before + 20);
}

#[tokio::test]
async fn every_server_down_gives_unavailable() {
    let servers = echo_servers(1).await;
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let proxy = start_proxy(&checked_http(&addrs, "fall 1", "")).await;
    for s in servers {
        s.kill().await;
    }
    wait_for(5, "s1 DOWN", || !server_up(&proxy, "be", "s1")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let st = within(5, client.unary(EchoRequest::default()))
        .await
        .expect_err("no server");
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(
        st.message().contains("no server available for backend be"),
        "{}",
        st.message()
    );
}

#[tokio::test]
async fn backup_is_used_only_when_actives_are_down() {
    let mut servers = echo_servers(3).await;
    let a: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let text = format!(
        "defaults\n    mode http\n    timeout connect 1s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 {} proto h2 check inter 100ms fall 1\n\
         \x20   server b1 {} proto h2 check inter 100ms backup\n\
         \x20   server b2 {} proto h2 backup\n",
        a[0], a[1], a[2]
    );
    let proxy = start_proxy(&text).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    for _ in 0..5 {
        within(5, client.unary(EchoRequest::default()))
            .await
            .expect("call");
    }
    assert_eq!(servers[0].stats.calls(), 5);
    assert_eq!(servers[1].stats.calls() + servers[2].stats.calls(), 0);

    let s1 = servers.remove(0);
    s1.kill().await;
    wait_for(5, "s1 DOWN", || !server_up(&proxy, "be", "s1")).await;
    for _ in 0..5 {
        within(5, client.unary(EchoRequest::default()))
            .await
            .expect("call on backup");
    }
    // The first usable backup takes everything.
    assert_eq!(servers[0].stats.calls(), 5);
    assert_eq!(servers[1].stats.calls(), 0);

    // First backup down too: the next one.
    let b1 = servers.remove(0);
    b1.kill().await;
    wait_for(5, "b1 DOWN", || !server_up(&proxy, "be", "b1")).await;
    within(5, client.unary(EchoRequest::default()))
        .await
        .expect("call on b2");
    assert_eq!(servers[0].stats.calls(), 1);
}

#[tokio::test]
async fn unreachable_server_is_a_layer4_timeout() {
    use socket2::{Domain, Socket, Type};
    // A listener whose accept queue is full: further SYNs are dropped.
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&any_addr().into()).expect("bind");
    s.listen(0).expect("listen");
    let addr = s
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet address");
    let mut fill = Vec::new();
    for _ in 0..4 {
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        c.set_nonblocking(true).expect("nonblocking");
        let _ = c.connect(&addr.into());
        fill.push(c);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = format!(
        "defaults\n    mode tcp\n    timeout check 150ms\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 {addr} check inter 100ms fall 1\n"
    );
    let proxy = start_proxy(&text).await;
    wait_for(5, "s1 DOWN", || !server_up(&proxy, "be", "s1")).await;
    assert_eq!(last_reason(&proxy, "s1"), "Layer4 timeout");
    drop(fill);
}

#[tokio::test]
async fn server_without_check_is_never_checked() {
    let (addr, task) = silent_listener(any_addr()).await;
    task.abort();
    let text = format!(
        "defaults\n    mode tcp\nfrontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 {addr} inter 100ms\n"
    );
    let proxy = start_proxy(&text).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server_up(&proxy, "be", "s1"));
    assert_eq!(checks_run(&proxy, "s1"), 0);
}

// ------------------------------------------------------------ configuration

fn parse(text: &str) -> Result<weir::config::Loaded, String> {
    weir::config::parse_str("t.cfg", text).map_err(|e| e.to_string())
}

#[test]
fn server_check_options_are_stored() {
    let loaded = parse(
        "backend be\n    server s1 127.0.0.1:1 check inter 3s fastinter 1s downinter 5s rise 4 fall 5 port 81 addr 127.0.0.2 backup\n    server s2 127.0.0.1:2\n",
    )
    .expect("valid");
    assert!(
        loaded.warnings.iter().all(|w| w.loc.is_none()),
        "{:?}",
        loaded.warnings
    );
    let be = loaded.config.backend("be").expect("be");
    let s1 = &be.servers[0];
    assert!(s1.check && s1.backup);
    let p = &s1.check_params;
    assert_eq!(p.inter, Duration::from_secs(3));
    assert_eq!(p.fastinter, Some(Duration::from_secs(1)));
    assert_eq!(p.downinter, Some(Duration::from_secs(5)));
    assert_eq!((p.rise, p.fall, p.port), (4, 5, Some(81)));
    assert_eq!(p.addr, Some("127.0.0.2".parse().expect("ip")));
    let s2 = &be.servers[1];
    assert!(!s2.check && !s2.backup);
    assert_eq!(s2.check_params, weir::config::CheckParams::default());
    assert_eq!(
        (
            s2.check_params.inter,
            s2.check_params.rise,
            s2.check_params.fall
        ),
        (Duration::from_millis(2000), 2, 3)
    );
    assert_eq!(be.check, weir::config::HealthCheck::Connect);
}

#[test]
fn bad_server_check_options() {
    let cases = [
        ("inter 0", "'inter' : timer must be strictly positive"),
        ("inter x", "'inter' :"),
        ("rise 0", "'rise' : value '0' is out of range"),
        ("fall", "'fall' : missing value (expected a number)"),
        ("port 70000", "'port' : value '70000' is out of range"),
        ("addr nohost", "'addr' : invalid address 'nohost'"),
        ("check-proto h3", "'check-proto' : unknown proto 'h3'"),
    ];
    for (opt, want) in cases {
        let err = parse(&format!(
            "backend be\n    server s1 127.0.0.1:1 check {opt}\n"
        ))
        .expect_err(opt);
        assert!(
            err.contains("parsing [t.cfg:2] : 'server' : ") && err.contains(want),
            "{opt}: {err}"
        );
    }
}

#[test]
fn default_server_sets_check_options() {
    let loaded = parse(
        "defaults\n    default-server check inter 500ms fall 5\n\
         backend be\n    default-server rise 4\n    server s1 127.0.0.1:1\n    server s2 127.0.0.1:2 no-check fall 1 backup\n",
    )
    .expect("valid");
    let be = loaded.config.backend("be").expect("be");
    let (s1, s2) = (&be.servers[0], &be.servers[1]);
    assert!(s1.check && !s1.backup);
    let p = &s1.check_params;
    assert_eq!(
        (p.inter, p.rise, p.fall),
        (Duration::from_millis(500), 4, 5)
    );
    assert!(!s2.check && s2.backup);
    assert_eq!((s2.check_params.rise, s2.check_params.fall), (4, 1));
    let err = parse("backend be\n    default-server inter never\n").expect_err("bad");
    assert!(
        err.contains("parsing [t.cfg:2] : 'default-server' : 'inter' : invalid time value 'never'"),
        "{err}"
    );
}

#[tokio::test]
async fn tcp_mode_sends_no_connection_to_a_down_server() {
    let servers = echo_servers(2).await;
    let text = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    option grpc-check\n{}",
        server_lines(
            &[servers[0].addr, servers[1].addr],
            "check inter 100ms fall 1"
        )
    );
    let proxy = start_proxy(&text).await;
    servers[0]
        .health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    wait_for(5, "s1 DOWN", || !server_up(&proxy, "be", "s1")).await;
    let before = servers[0].stats.calls();
    for _ in 0..6 {
        // One connection per call: each is balanced on its own.
        let mut client = echo_client(fe_addr(&proxy)).await;
        within(5, client.unary(EchoRequest::default()))
            .await
            .expect("call");
    }
    assert_eq!(servers[0].stats.calls(), before);
    assert_eq!(servers[1].stats.calls(), 6);
}
