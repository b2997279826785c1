//! The codename-creator demo (HAProxy's classic gRPC demo): N demo gRPC
//! backends, weir in front of them balancing round robin per call, and a
//! client that shows which backend answered each call.
//!
//! * `weir demo`: backends + proxy + client (`--no-client` for proxy and
//!   backends only, to use with grpcurl or `weir demo-client`);
//! * `weir demo-client`: the client alone, against any CodenameCreator
//!   server (`--stream` follows `KeepGettingCodenames` instead).
//!
//! The config `weir demo` runs is printed at start and is the same as
//! `examples/demo.cfg` (with the ports it actually used).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub mod backend;
pub mod client;

/// Generated protobuf and gRPC types for `proto/codename.proto` (no
/// package: the paths are `/CodenameCreator/GetCodename` and
/// `/CodenameCreator/KeepGettingCodenames`).
pub mod pb {
    tonic::include_proto!("_");
}

pub use backend::{codename, spawn_backend, BackendHandle, CodenameBackend};

/// Errors of the demo commands.
pub type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// The frontend and backend names in the demo config.
pub const FRONTEND: &str = "fe_demo";
pub const BACKEND: &str = "be_demo";

/// How long shutdown waits for calls in flight.
const GRACE: Duration = Duration::from_secs(2);

/// `weir demo`: start demo backends and weir in front of them, then run the
/// demo client through the proxy.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Address the proxy listens on (h2c and HTTP/1.1).
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub listen: SocketAddr,
    /// Number of demo backends.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub backends: u16,
    /// Port of the first backend (the others follow); 0 picks free ports.
    #[arg(long, default_value_t = 50051)]
    pub backend_base_port: u16,
    /// Stop after this many calls (default: run until Ctrl-C).
    #[arg(long)]
    pub calls: Option<u64>,
    /// Calls per second.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Start the proxy and backends only (for grpcurl or `weir demo-client`).
    #[arg(long)]
    pub no_client: bool,
    /// Where the stats frontend listens: `/metrics` (Prometheus) and
    /// `/stats` (HTML page); `off` for none.
    #[arg(long, default_value = "127.0.0.1:8404", value_parser = parse_stats_addr)]
    pub stats: StatsAddr,
}

/// `--stats <addr>|off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsAddr(pub Option<SocketAddr>);

fn parse_stats_addr(s: &str) -> Result<StatsAddr, String> {
    if s == "off" {
        return Ok(StatsAddr(None));
    }
    s.parse()
        .map(|a| StatsAddr(Some(a)))
        .map_err(|e| format!("'{s}' is not an address (ip:port) or 'off': {e}"))
}

/// The name of the demo's stats frontend.
pub const STATS_FRONTEND: &str = "stats";

/// `weir demo-client`: call a CodenameCreator service and show which
/// backend answers.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Where to call (the proxy).
    #[arg(long, default_value = "http://127.0.0.1:50050")]
    pub target: String,
    /// Stop after this many calls, or names with --stream (default: until Ctrl-C).
    #[arg(long)]
    pub calls: Option<u64>,
    /// Calls per second (unary mode).
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Codename category: animals, birds, fish, cities (others get a generic list).
    #[arg(long, default_value = "animals")]
    pub category: String,
    /// Use KeepGettingCodenames: one stream, switching category every few
    /// seconds by sending a new NameRequest on it.
    #[arg(long)]
    pub stream: bool,
    /// Metadata sent with every call, `name:value` (repeatable), e.g.
    /// `--header mysecretpassphrase:abc123` for examples/grpc-routing.cfg.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// With an `https://` target: the CA file to verify weir's certificate
    /// against (e.g. examples/tls/ca.crt).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// With an `https://` target: the name to verify (default: the target's host).
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
}

impl Default for ClientArgs {
    fn default() -> Self {
        Self {
            target: "http://127.0.0.1:50050".to_owned(),
            calls: None,
            rate: 5.0,
            category: "animals".to_owned(),
            stream: false,
            headers: Vec::new(),
            ca_file: None,
            domain: None,
        }
    }
}

/// The weir configuration of the demo: frontend [`FRONTEND`] on `listen`
/// (no `proto h2`, so both h2c and HTTP/1.1 clients work), backend
/// [`BACKEND`] balancing round robin over `servers` (name, address), and,
/// with `stats`, a frontend serving `/metrics` and the `/stats` page.
pub fn demo_config(
    listen: SocketAddr,
    stats: Option<SocketAddr>,
    servers: &[(String, SocketAddr)],
) -> String {
    let mut text = String::from(
        "# weir codename-creator demo (HAProxy's classic gRPC demo)\n\
         defaults\n    \
             mode http\n    \
             timeout connect 5s\n    \
             timeout client 30s\n    \
             timeout server 30s\n\n",
    );
    text.push_str(&format!(
        "frontend {FRONTEND}\n    bind {listen}\n    default_backend {BACKEND}\n\n"
    ));
    if let Some(stats) = stats {
        text.push_str(&format!(
            "frontend {STATS_FRONTEND}\n    bind {stats}\n    \
             http-request use-service prometheus-exporter if {{ path /metrics }}\n    \
             stats enable\n    stats uri /stats\n    stats refresh 5s\n\n"
        ));
    }
    text.push_str(&format!("backend {BACKEND}\n    balance roundrobin\n"));
    for (name, addr) in servers {
        text.push_str(&format!(
            "    server {name} {addr} proto h2 check inter 2s\n"
        ));
    }
    text
}

/// Demo backends with weir in front of them.
pub struct DemoStack {
    /// The proxy's address.
    pub proxy_addr: SocketAddr,
    /// Backend names and addresses, in order.
    pub servers: Vec<(String, SocketAddr)>,
    /// The configuration text the proxy runs.
    pub config_text: String,
    /// Where `/metrics` and `/stats` are served, if anywhere.
    pub stats_addr: Option<SocketAddr>,
    proxy: crate::proxy::Running,
    backends: Vec<BackendHandle>,
}

impl DemoStack {
    /// Starts `count` backends (`demo-backend-1`...) on 127.0.0.1 (ports
    /// `base_port + i`, or free ports if `base_port` is 0) and weir on
    /// `listen`.
    pub async fn start(
        listen: SocketAddr,
        stats: Option<SocketAddr>,
        count: u16,
        base_port: u16,
    ) -> Result<Self, DemoError> {
        let mut servers = Vec::with_capacity(usize::from(count));
        let mut backends = Vec::with_capacity(usize::from(count));
        for i in 0..count {
            let port = if base_port == 0 {
                0
            } else {
                base_port
                    .checked_add(i)
                    .ok_or_else(|| format!("backend port {base_port} + {i} is past 65535"))?
            };
            let name = format!("demo-backend-{}", i + 1);
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
            let (local, handle) = spawn_backend(addr, &name)
                .await
                .map_err(|e| format!("cannot start {name} on {addr}: {e}"))?;
            servers.push((name, local));
            backends.push(handle);
        }
        let config_text = demo_config(listen, stats, &servers);
        let loaded = crate::config::parse_str("demo", &config_text)
            .map_err(|e| format!("the demo config is invalid:\n{e}"))?;
        for warning in &loaded.warnings {
            eprintln!("[WARNING] {warning}");
        }
        let proxy = crate::proxy::start(loaded.config).await?;
        let proxy_addr = proxy
            .local_addr(FRONTEND)
            .ok_or_else(|| format!("frontend {FRONTEND} is not bound"))?;
        let stats_addr = proxy.local_addr(STATS_FRONTEND);
        Ok(Self {
            proxy_addr,
            servers,
            config_text,
            stats_addr,
            proxy,
            backends,
        })
    }

    /// `http://<proxy address>`, the client's target.
    pub fn target(&self) -> String {
        format!("http://{}", self.proxy_addr)
    }

    /// Stops the proxy, then the backends.
    pub async fn shutdown(self) {
        self.proxy.shutdown(GRACE).await;
        for backend in self.backends {
            backend.shutdown(GRACE).await;
        }
    }
}

/// `weir demo`: backends, proxy and (unless `--no-client`) the client, until
/// `--calls` are done or Ctrl-C.
pub async fn run_demo(args: DemoArgs) -> Result<(), DemoError> {
    let stack = DemoStack::start(
        args.listen,
        args.stats.0,
        args.backends,
        args.backend_base_port,
    )
    .await?;
    println!("--- weir config ---");
    print!("{}", stack.config_text);
    println!("-------------------");
    for (name, addr) in &stack.servers {
        println!("backend {name} on {addr}");
    }
    println!("weir listening on {} (h2c and HTTP/1.1)", stack.proxy_addr);
    if let Some(a) = stack.stats_addr {
        println!("metrics: http://{a}/metrics   stats page: http://{a}/stats");
    }

    let result = if args.no_client {
        println!();
        println!("try:  weir demo-client --target {}", stack.target());
        println!(
            "or:   grpcurl -plaintext -import-path proto -proto codename.proto \
             -d '{{\"category\":\"animals\"}}' {} CodenameCreator/GetCodename",
            stack.proxy_addr
        );
        println!("Ctrl-C to stop.");
        wait_for_signal().await.map_err(DemoError::from)
    } else {
        println!();
        let client_args = ClientArgs {
            target: stack.target(),
            calls: args.calls,
            rate: args.rate,
            ..ClientArgs::default()
        };
        client::run(client_args).await
    };
    stack.shutdown().await;
    result
}

/// `weir demo-client`.
pub async fn run_client(args: ClientArgs) -> Result<(), DemoError> {
    client::run(args).await
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_parses() {
        let servers: Vec<(String, SocketAddr)> = (1..=3)
            .map(|i| {
                let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50050 + i);
                (format!("demo-backend-{i}"), addr)
            })
            .collect();
        let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50050);
        let stats = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8404);
        let text = demo_config(listen, Some(stats), &servers);
        assert!(
            text.contains("    server demo-backend-3 127.0.0.1:50053 proto h2 check inter 2s\n")
        );
        assert!(text.contains("frontend stats\n    bind 127.0.0.1:8404\n"));
        let loaded = crate::config::parse_str("demo", &text).expect("valid");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let fe = loaded.config.frontend(FRONTEND).expect("frontend");
        assert_eq!(fe.binds[0].addr, listen);
        assert_eq!(fe.binds[0].proto, None);
        let be = loaded.config.backend(BACKEND).expect("backend");
        assert_eq!(be.servers.len(), 3);
    }

    #[test]
    fn example_file_matches() {
        // examples/demo.cfg is the default demo config behind a comment.
        let text = include_str!("../../examples/demo.cfg");
        let servers: Vec<(String, SocketAddr)> = (1..=3)
            .map(|i| {
                let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50050 + i);
                (format!("demo-backend-{i}"), addr)
            })
            .collect();
        let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50050);
        let stats = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8404);
        assert!(text.ends_with(&demo_config(listen, Some(stats), &servers)));
        let loaded = crate::config::parse_str("examples/demo.cfg", text).expect("valid");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }
}
