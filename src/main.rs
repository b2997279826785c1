//! The `weir` command: run a proxy from an HAProxy-style file (`weir -f`),
//! check one (`weir -c -f`), or run the codename-creator demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// jemalloc by default: against glibc's malloc, 3 % fewer instructions
/// per proxied call and 16 % less memory per idle HTTP/2 connection
/// (docs/benchmarks.md). `--features mimalloc` takes mimalloc instead.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start (its `malloc_conf`; the
/// `_RJEM_MALLOC_CONF` environment variable is read after it and wins).
/// `dirty_decay_ms:100`: pages freed by the buffers of fast streams go back
/// to the kernel within about 0.1 s instead of jemalloc's default 10 s. In
/// scenario (c) (16 server streams at 1 GB/s and more) that keeps weir's
/// peak RSS near 40 MiB instead of 90; 64 KiB messages pay 5–9 % more CPU
/// per call for it, small calls nothing measurable (docs/benchmarks.md,
/// "Peak RSS of fast streams").
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 19] = b"dirty_decay_ms:100\0";

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "weir",
    version,
    about = "A gRPC-native load balancer and reverse proxy"
)]
struct Cli {
    /// Configuration file (HAProxy syntax).
    #[arg(short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Only check the configuration, print the verdict and exit (0 valid, 1 not).
    #[arg(short = 'c')]
    check: bool,
    /// Write weir's process id to this file (HAProxy's -p); `weir reload -p`
    /// reads it.
    #[arg(short = 'p', value_name = "PIDFILE")]
    pidfile: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start weir in front of demo gRPC backends and show calls spreading across them.
    Demo(weir::demo::DemoArgs),
    /// Only the demo client, against any address serving CodenameCreator.
    DemoClient(weir::demo::ClientArgs),
    /// Ask a running weir to reload its configuration (sends SIGHUP to the
    /// process whose id is in the pid file given with -p).
    Reload {
        /// The pid file the running weir was started with (`-p`).
        #[arg(short = 'p', long = "pidfile", value_name = "PIDFILE")]
        pidfile: PathBuf,
    },
}

/// `weir reload -p <pidfile>`: SIGHUP to the pid in the file.
fn send_reload(pidfile: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(pidfile) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("weir reload: cannot read {}: {e}", pidfile.display());
            return ExitCode::from(1);
        }
    };
    let pid: i32 = match text.trim().parse() {
        Ok(p) if p > 1 => p,
        _ => {
            eprintln!(
                "weir reload: {} does not hold a process id ('{}')",
                pidfile.display(),
                text.trim()
            );
            return ExitCode::from(1);
        }
    };
    #[cfg(unix)]
    {
        // SAFETY: kill(2) with a plain pid and signal number has no memory
        // effects; its result is checked.
        let r = unsafe { libc::kill(pid, libc::SIGHUP) };
        if r != 0 {
            eprintln!(
                "weir reload: cannot signal process {pid}: {}",
                std::io::Error::last_os_error()
            );
            return ExitCode::from(1);
        }
        println!("weir reload: SIGHUP sent to process {pid}");
        ExitCode::SUCCESS
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        eprintln!("weir reload: signals are only available on Unix");
        ExitCode::from(1)
    }
}

/// Writes the pid file; removes it when dropped.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn create(path: Option<PathBuf>) -> std::io::Result<PidFile> {
        if let Some(p) = &path {
            std::fs::write(p, format!("{}\n", std::process::id()))?;
        }
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// weir's main thread runs a current-thread runtime: it is worker 0 of the
/// proxy (HAProxy's thread model, see `proxy::start_threads`).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `nbthread`, else one worker per CPU.
fn worker_count(nbthread: Option<usize>) -> usize {
    nbthread.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Demo(args)) => {
            init_logging();
            return run_async(weir::demo::run_demo(args));
        }
        Some(Cmd::DemoClient(args)) => {
            init_logging();
            return run_async(weir::demo::run_client(args));
        }
        Some(Cmd::Reload { pidfile }) => return send_reload(&pidfile),
        None => {}
    }
    let Some(path) = cli.file else {
        eprintln!("weir: no configuration file given (use -f <file>, or 'weir demo')");
        return ExitCode::from(2);
    };
    let loaded = match weir::config::load_file(&path) {
        Ok(l) => l,
        Err(e) => {
            for w in &e.warnings {
                eprintln!("[WARNING] {w}");
            }
            for err in &e.errors {
                eprintln!("[ALERT] {err}");
            }
            eprintln!("[ALERT] Fatal errors found in configuration.");
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        eprintln!("[WARNING] {w}");
    }
    // What the parser accepts but this build cannot run yet is an error for
    // `-c` as much as for a real start.
    if let Err(e) = weir::runtime::Snapshot::build(&loaded.config) {
        eprintln!("[ALERT] {e}");
        eprintln!("[ALERT] Fatal errors found in configuration.");
        return ExitCode::from(1);
    }
    if cli.check {
        println!("Configuration file is valid");
        return ExitCode::SUCCESS;
    }
    init_logging();
    let config = loaded.config;
    let threads = worker_count(config.global.nbthread);
    let _pidfile = match PidFile::create(cli.pidfile.clone()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[ALERT] cannot write the pid file: {e}");
            return ExitCode::from(1);
        }
    };
    run_async(async move {
        let mut grace = config.global.hard_stop_after.unwrap_or(DEFAULT_GRACE);
        let mut running = weir::proxy::start_threads(config, threads).await?;
        let mut hup = reload_signal();
        loop {
            tokio::select! {
                _ = wait_for_signal() => break,
                _ = hup.recv() => {
                    if let Some(g) = reload(&mut running, &path).await {
                        grace = g;
                    }
                }
            }
        }
        tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down");
        running.shutdown(grace).await;
        Ok(())
    })
}

/// How long a stopping weir lets open connections finish when the
/// configuration has no `hard-stop-after`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// SIGHUP: re-read the file and swap it in. An invalid file changes nothing
/// (every error is logged); returns the new `hard-stop-after` when applied.
async fn reload(running: &mut weir::proxy::Running, path: &std::path::Path) -> Option<Duration> {
    tracing::info!(file = %path.display(), "reloading");
    let loaded = match weir::config::load_file(path) {
        Ok(l) => l,
        Err(e) => {
            for w in &e.warnings {
                tracing::warn!("[WARNING] {w}");
            }
            for err in &e.errors {
                tracing::error!("[ALERT] {err}");
            }
            tracing::error!(
                "reload refused: the configuration has errors; still running the previous one"
            );
            return None;
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("[WARNING] {w}");
    }
    let grace = loaded
        .config
        .global
        .hard_stop_after
        .unwrap_or(DEFAULT_GRACE);
    match running.reload(loaded.config).await {
        Ok(()) => {
            tracing::info!(reloads = running.reloads(), "reloaded");
            Some(grace)
        }
        Err(e) => {
            tracing::error!("reload failed: {e}; still running the previous configuration");
            None
        }
    }
}

/// A stream of SIGHUPs (never fires where there is no such signal).
fn reload_signal() -> ReloadSignal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(s) = signal(SignalKind::hangup()) {
            return ReloadSignal(Some(s));
        }
    }
    ReloadSignal(None)
}

struct ReloadSignal(
    #[cfg(unix)] Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] Option<()>,
);

impl ReloadSignal {
    async fn recv(&mut self) {
        match &mut self.0 {
            #[cfg(unix)]
            Some(s) => {
                if s.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
}

fn run_async<F>(fut: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[ALERT] {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
