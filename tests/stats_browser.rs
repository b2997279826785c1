//! The stats page (`stats uri`) seen by a real browser: headless Chromium
//! loads `http://127.0.0.1:PORT/stats` from an in-process proxy while gRPC
//! traffic flows, dumps the DOM it built, and takes a screenshot.
//!
//! Setup: frontend `fe` -> backend `be_app` with two live echo servers
//! (`check`, so UP) and one server on a closed port (`check inter 200ms`,
//! so DOWN), plus a `stats` frontend. A background task makes unary calls:
//! most end OK, every fourth asks the echo server to answer NOT_FOUND.
//!
//! The test parses the dumped DOM (the contract the page promises, see
//! docs/observability.md) and checks server states, session totals, the
//! gRPC status counts and latency cells of `be_app`, and the meta refresh.
//! The screenshot goes to `<target>/test-artifacts/stats-page.png` (and the
//! DOM next to it as `stats-page.html`), `<target>` being `CARGO_TARGET_DIR`
//! or the crate's `target/`.
//!
//! Needs `chromium` (or `chromium-browser`, or `google-chrome`) on PATH;
//! with none, the test fails unless `WEIR_SKIP_BROWSER=1`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scraper::{ElementRef, Html, Selector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_echo::pb::EchoRequest;

use common::*;

/// How long one Chromium run may take before it is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);

/// Browser binaries tried, in order.
const BROWSERS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

const NOT_FOUND: i32 = 5;

// ------------------------------------------------------------ browser harness

/// The first of [`BROWSERS`] found on PATH.
fn find_browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    BROWSERS.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What one browser run printed.
struct BrowserRun {
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs headless `browser` with `args` then `url`, with a fresh profile in
/// a temporary directory. The browser leads its own process group, so on
/// overrunning [`BROWSER_LIMIT`] that group (the child's PID) is killed:
/// only processes this run started. Blocking: call it off the runtime.
fn run_browser(browser: &Path, args: &[String], url: &str) -> BrowserRun {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let profile = tmp.path().join("profile");
    let out_path = tmp.path().join("stdout");
    let err_path = tmp.path().join("stderr");
    let start = Instant::now();
    let mut child = Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", tmp.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", browser.display()));
    let pid = child.id();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for browser") {
            break st;
        }
        if start.elapsed() > BROWSER_LIMIT {
            // The group is ours: its leader has not been reaped yet.
            // SAFETY: kill(2) with a negative pid signals that process group.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!(
                "{} did not finish within {BROWSER_LIMIT:?} (pid {pid}, killed)\nstderr:\n{stderr}",
                browser.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = start.elapsed();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "{} {args:?} {url} failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        browser.display()
    );
    BrowserRun {
        stdout,
        stderr,
        took,
    }
}

/// [`run_browser`] on a blocking thread, so the in-process proxy keeps
/// serving; its panic is the caller's.
async fn browse(browser: &Path, args: Vec<String>, url: &str) -> BrowserRun {
    let (b, u) = (browser.to_path_buf(), url.to_string());
    tokio::task::spawn_blocking(move || run_browser(&b, &args, &u))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Where test artifacts go: `<target>/test-artifacts`.
fn artifact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let target = if target.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(target)
    } else {
        target
    };
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create the artifact directory");
    dir
}

/// A plain HTTP/1.1 GET of `path`: the status line and body length, so a
/// page that is not served fails with a clear message before the browser.
async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.lines().next().unwrap_or_default().to_string();
    (status, text)
}

// ------------------------------------------------------------ DOM helpers

fn sel(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("selector {css}: {e:?}"))
}

fn text(e: ElementRef<'_>) -> String {
    e.text().collect::<String>().trim().to_string()
}

/// The one element matching `css` under `root`; the DOM excerpt otherwise.
fn one<'a>(root: ElementRef<'a>, css: &str, what: &str) -> ElementRef<'a> {
    let selector = sel(css);
    let mut it = root.select(&selector);
    match (it.next(), it.next()) {
        (Some(e), None) => e,
        (None, _) => panic!("{what}: nothing matches `{css}` in:\n{}", root.html()),
        (Some(_), Some(_)) => panic!(
            "{what}: several elements match `{css}` in:\n{}",
            root.html()
        ),
    }
}

/// A cell holding a count (`1234`, `1,234` or `1 234`).
fn count(cell: ElementRef<'_>, what: &str) -> u64 {
    let t = text(cell);
    t.replace([',', ' ', '\u{a0}', '\u{202f}'], "")
        .parse()
        .unwrap_or_else(|_| panic!("{what}: `{t}` is not a count: {}", cell.html()))
}

// ------------------------------------------------------------ the test

/// A port nothing listens on: bound, then closed.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind(ANY).expect("bind");
    l.local_addr().expect("addr")
}

fn config(live: &[SocketAddr], dead: SocketAddr) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be_app\n\
         backend be_app\n    balance roundrobin\n\
         \x20   server app1 {} proto h2 check inter 200ms\n\
         \x20   server app2 {} proto h2 check inter 200ms\n\
         \x20   server dead {dead} proto h2 check inter 200ms\n\
         frontend stats\n    bind 127.0.0.1:0\n\
         \x20   http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         \x20   stats enable\n    stats uri /stats\n    stats refresh 10s\n",
        live[0], live[1]
    )
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    not_found: AtomicU64,
    other: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_page_in_headless_chromium() {
    let Some(browser) = find_browser() else {
        if std::env::var("WEIR_SKIP_BROWSER").as_deref() == Ok("1") {
            println!("stats_browser: no headless Chromium found, skipped (WEIR_SKIP_BROWSER=1)");
            return;
        }
        panic!(
            "headless Chromium not found: install it (apt-get install chromium) or set WEIR_SKIP_BROWSER=1"
        );
    };
    let t0 = Instant::now();
    println!("stats_browser: browser {}", browser.display());

    let servers = echo_servers(2).await;
    let live: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let proxy = start_proxy(&config(&live, closed_port())).await;
    let fe = proxy.local_addr("fe").expect("frontend fe is bound");
    let stats = proxy.local_addr("stats").expect("frontend stats is bound");
    let url = format!("http://{stats}/stats");

    // Traffic: a bounded loop of unary calls until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let traffic = {
        let (stop, tally) = (stop.clone(), tally.clone());
        let mut client = echo_client(fe).await;
        tokio::spawn(async move {
            for i in 0..20_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let req = EchoRequest {
                    status_code: if i % 4 == 3 { NOT_FOUND } else { 0 },
                    status_message: "no such thing".into(),
                    ..Default::default()
                };
                let r = tokio::time::timeout(Duration::from_secs(5), client.unary(req)).await;
                match r {
                    Ok(Ok(_)) => &tally.ok,
                    Ok(Err(st)) if st.code() == tonic::Code::NotFound => &tally.not_found,
                    _ => &tally.other,
                }
                .fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let took = wait_for(15, "server be_app/dead DOWN", || {
        !server_up(&proxy, "be_app", "dead")
    })
    .await;
    println!("stats_browser: be_app/dead DOWN after {took:?}");
    wait_for(15, "OK and NOT_FOUND calls through weir", || {
        tally.ok.load(Ordering::Relaxed) >= 20 && tally.not_found.load(Ordering::Relaxed) >= 5
    })
    .await;
    assert!(server_up(&proxy, "be_app", "app1") && server_up(&proxy, "be_app", "app2"));
    assert!(servers[0].stats.calls() > 0 && servers[1].stats.calls() > 0);

    // The page is served at all (a clear failure before the browser's).
    let (status, resp) = within(10, http_get(stats, "/stats")).await;
    assert!(
        status.contains(" 200"),
        "GET /stats: {status}\n{}",
        resp.chars().take(2000).collect::<String>()
    );

    // DOM as Chromium built it.
    let run = browse(&browser, vec!["--dump-dom".into()], &url).await;
    println!(
        "stats_browser: --dump-dom took {:?}, {} bytes of DOM",
        run.took,
        run.stdout.len()
    );
    let dir = artifact_dir();
    std::fs::write(dir.join("stats-page.html"), &run.stdout).expect("write the DOM");
    assert!(
        run.stdout.contains("<html"),
        "no DOM on stdout\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );

    // Screenshot, while the traffic still flows.
    let png = dir.join("stats-page.png");
    let _ = std::fs::remove_file(&png);
    let args = vec![
        format!("--screenshot={}", png.display()),
        "--window-size=1400,1000".to_string(),
    ];
    let shot = browse(&browser, args, &url).await;
    stop.store(true, Ordering::Relaxed);
    within(10, traffic).await.expect("traffic task");
    let size = std::fs::metadata(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{}", png.display(), shot.stderr))
        .len();
    println!(
        "stats_browser: screenshot took {:?}: {} ({size} bytes)",
        shot.took,
        png.display()
    );
    assert!(
        size > 10 * 1024,
        "screenshot {} is only {size} bytes",
        png.display()
    );
    println!(
        "stats_browser: calls: {} OK, {} NOT_FOUND, {} other",
        tally.ok.load(Ordering::Relaxed),
        tally.not_found.load(Ordering::Relaxed),
        tally.other.load(Ordering::Relaxed)
    );

    check_dom(&run.stdout);
    println!(
        "stats_browser: DOM contract holds; total {:?}",
        t0.elapsed()
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// The DOM contract of the stats page, for this test's setup.
fn check_dom(dom: &str) {
    let doc = Html::parse_document(dom);
    let root = doc.root_element();

    // <meta http-equiv="refresh" content="10">
    let meta = one(root, r#"meta[http-equiv="refresh"]"#, "meta refresh");
    assert_eq!(
        meta.value().attr("content").map(str::trim),
        Some("10"),
        "meta refresh: {}",
        meta.html()
    );

    // Frontend tables with a current-sessions cell.
    let fe = one(root, "table.px.fe#fe-fe", "frontend fe table");
    let scur = fe.select(&sel("td.scur")).next();
    assert!(scur.is_some(), "frontend fe has no td.scur: {}", fe.html());
    one(root, "table.px.fe#fe-stats", "frontend stats table");

    // Backend be_app and its server rows.
    let be = one(root, "table.px.be#be-be_app", "backend be_app table");
    for (srv, want) in [("app1", "UP"), ("app2", "UP"), ("dead", "DOWN")] {
        let what = format!("be_app/{srv}");
        let row = one(
            be,
            &format!(r#"tr.srv[data-backend="be_app"][data-server="{srv}"]"#),
            &what,
        );
        assert_eq!(
            row.value().attr("data-state"),
            Some(want),
            "{what} data-state: {}",
            row.html()
        );
        let state = text(one(row, "td.state", &what));
        assert!(
            state.split_whitespace().any(|w| w == want),
            "{what}: state cell `{state}`, want {want}: {}",
            row.html()
        );
        let stot = count(one(row, "td.stot", &what), &format!("{what} stot"));
        if want == "UP" {
            assert!(stot > 0, "{what}: stot {stot}: {}", row.html());
        }
        println!("stats_browser: {what}: {want}, stot {stot}");
    }

    // gRPC panel of be_app.
    let grpc = one(root, "table.grpc#grpc-be_app", "gRPC panel of be_app");
    for code in ["OK", "NOT_FOUND"] {
        let what = format!("gRPC {code} row of be_app");
        let row = one(grpc, &format!(r#"tr[data-code="{code}"]"#), &what);
        assert_eq!(
            text(one(row, "td.code", &what)),
            code,
            "{what}: {}",
            row.html()
        );
        let n = count(one(row, "td.count", &what), &what);
        assert!(n > 0, "{what}: count {n}: {}", row.html());
        println!("stats_browser: be_app gRPC {code}: {n}");
    }
    let lat = one(grpc, "tr.grpc-latency", "gRPC latency row of be_app");
    for q in ["p50", "p99"] {
        let v = text(one(lat, &format!("td.{q}"), "latency"));
        assert!(!v.is_empty(), "be_app {q} is empty: {}", lat.html());
        println!("stats_browser: be_app {q}: {v}");
    }
}
