//! `weir-echo`: runs the echo backend until SIGINT/SIGTERM.
//!
//! ```text
//! weir-echo --listen 127.0.0.1:50051 --id echo1 [--max-concurrent-streams N]
//! ```

use std::net::SocketAddr;

use clap::Parser;
use weir_echo::{EchoHandle, EchoOptions};

#[derive(Parser, Debug)]
#[command(
    name = "weir-echo",
    version,
    about = "A fast, controllable gRPC echo backend"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Server id, returned in replies and in `x-echo-server`.
    #[arg(long, default_value = "echo1")]
    id: String,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS to announce.
    #[arg(long)]
    max_concurrent_streams: Option<u32>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let options = EchoOptions {
        max_concurrent_streams: args.max_concurrent_streams,
    };
    let handle = EchoHandle::spawn_with(args.listen, &args.id, options).await?;
    println!("weir-echo {} listening on {}", args.id, handle.addr);
    wait_for_signal().await?;
    eprintln!("weir-echo {}: shutting down", args.id);
    handle.kill().await;
    Ok(())
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
