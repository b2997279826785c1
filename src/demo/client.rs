//! The demo client: calls `GetCodename` at a steady rate over one channel
//! and shows, live, which backend answered each call; or, with `--stream`,
//! follows one `KeepGettingCodenames` stream and switches category on it.
//!
//! Output (stdout) of a unary run, one line per call, then a summary whose
//! last line is machine-checkable:
//!
//! ```text
//! demo-backend-2  Bold Badger          [b1: 4  b2: 5  b3: 4]
//! ...
//! spread: demo-backend-1=10 demo-backend-2=10 demo-backend-3=10
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::backend::{category_nouns, BACKEND_HEADER, CATEGORIES};
use super::pb::codename_creator_client::CodenameCreatorClient;
use super::pb::NameRequest;
use super::{ClientArgs, DemoError};

/// How long the streaming client stays on one category.
const SWITCH_EVERY: Duration = Duration::from_secs(3);

/// Tally key for responses without `x-backend`.
const UNKNOWN: &str = "?";

/// Runs the client until `--calls` calls (or streamed names) are done, or
/// until Ctrl-C. With `--calls`, any failed call makes the run fail.
pub async fn run(args: ClientArgs) -> Result<(), DemoError> {
    let channel = connect(&args).await?;
    let client = CodenameCreatorClient::new(channel);
    if args.stream {
        run_stream(client, &args).await
    } else {
        run_unary(client, &args).await
    }
}

/// Parsed `--header name:value` options.
type Headers = Vec<(MetadataKey<Ascii>, MetadataValue<Ascii>)>;

fn parse_headers(args: &[String]) -> Result<Headers, DemoError> {
    args.iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("bad --header '{h}' (expected name:value)"))?;
            let name = MetadataKey::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("bad --header name in '{h}'"))?;
            let value = MetadataValue::try_from(value.trim())
                .map_err(|_| format!("bad --header value in '{h}'"))?;
            Ok((name, value))
        })
        .collect()
}

fn with_headers<T>(message: T, headers: &Headers) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    for (k, v) in headers {
        req.metadata_mut().append(k.clone(), v.clone());
    }
    req
}

async fn connect(args: &ClientArgs) -> Result<Channel, DemoError> {
    let target = args.target.as_str();
    let mut endpoint = Endpoint::from_shared(target.to_owned())
        .map_err(|e| format!("bad --target '{target}': {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if target.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(path) = &args.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --ca-file '{}': {e}", path.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some(d) = &args.domain {
            tls = tls.domain_name(d.clone());
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS settings for {target}: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    Ok(channel)
}

fn backend_of(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get(BACKEND_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(UNKNOWN)
        .to_owned()
}

/// `demo-backend-2` -> `b2`; other names unchanged.
fn short(name: &str) -> String {
    match name.strip_prefix("demo-backend-") {
        Some(n) => format!("b{n}"),
        None => name.to_owned(),
    }
}

/// Calls per backend, in name order.
#[derive(Debug, Default)]
struct Tally {
    per_backend: BTreeMap<String, u64>,
    errors: u64,
}

impl Tally {
    fn record(&mut self, backend: &str) {
        *self.per_backend.entry(backend.to_owned()).or_default() += 1;
    }

    fn ok(&self) -> u64 {
        self.per_backend.values().sum()
    }

    /// `[b1: 4  b2: 5  b3: 4]`
    fn brief(&self) -> String {
        let parts: Vec<String> = self
            .per_backend
            .iter()
            .map(|(name, n)| format!("{}: {n}", short(name)))
            .collect();
        format!("[{}]", parts.join("  "))
    }

    /// `spread: demo-backend-1=10 demo-backend-2=10 ...`
    fn spread_line(&self) -> String {
        let mut line = String::from("spread:");
        for (name, n) in &self.per_backend {
            line.push_str(&format!(" {name}={n}"));
        }
        if self.errors > 0 {
            line.push_str(&format!(" errors={}", self.errors));
        }
        line
    }

    fn print_summary(&self, elapsed: Duration) {
        let total = self.ok() + self.errors;
        println!();
        println!(
            "--- {total} calls in {:.2}s: {} ok, {} failed ---",
            elapsed.as_secs_f64(),
            self.ok(),
            self.errors
        );
        let widest = self.per_backend.values().copied().max().unwrap_or(0).max(1);
        for (name, n) in &self.per_backend {
            let share = if total > 0 {
                100.0 * *n as f64 / total as f64
            } else {
                0.0
            };
            let bar = "#".repeat(((*n * 40) / widest) as usize);
            println!("{name:<16} {n:>6}  {share:5.1}%  {bar}");
        }
        println!("{}", self.spread_line());
    }
}

/// The known category whose nouns `name` ends with (a name sent just
/// before a switch still belongs to the old one).
fn category_of(name: &str) -> Option<&'static str> {
    let (_, noun) = name.split_once(' ')?;
    CATEGORIES
        .into_iter()
        .find(|c| category_nouns(c).contains(&noun))
}

/// Whether another call (or name) is wanted after `done`.
fn wanted(calls: Option<u64>, done: u64) -> bool {
    match calls {
        Some(n) => done < n,
        None => true,
    }
}

fn ticker(rate: f64) -> tokio::time::Interval {
    let rate = if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        1.0
    };
    let period = Duration::from_secs_f64((1.0 / rate).clamp(0.000_1, 3600.0));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

async fn run_unary(
    mut client: CodenameCreatorClient<Channel>,
    args: &ClientArgs,
) -> Result<(), DemoError> {
    let headers = parse_headers(&args.headers)?;
    let mut tally = Tally::default();
    let mut ticker = ticker(args.rate);
    let started = Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let mut done = 0u64;
    while wanted(args.calls, done) {
        tokio::select! {
            _ = &mut ctrl_c => {
                interrupted = true;
                break;
            }
            _ = ticker.tick() => {}
        }
        let request = NameRequest {
            category: args.category.clone(),
        };
        let result = tokio::select! {
            _ = &mut ctrl_c => {
                interrupted = true;
                break;
            }
            result = client.get_codename(with_headers(request, &headers)) => result,
        };
        done += 1;
        match result {
            Ok(response) => {
                let backend = backend_of(response.metadata());
                tally.record(&backend);
                let name = response.into_inner().name;
                println!("{backend:<16} {name:<24} {}", tally.brief());
            }
            Err(status) => {
                tally.errors += 1;
                println!(
                    "{:<16} {:<24} {}",
                    "error",
                    format!("{:?}: {}", status.code(), status.message()),
                    tally.brief()
                );
            }
        }
    }
    tally.print_summary(started.elapsed());
    if args.calls.is_some() && !interrupted && tally.errors > 0 {
        return Err(format!("{} of {done} calls failed", tally.errors).into());
    }
    Ok(())
}

async fn run_stream(
    mut client: CodenameCreatorClient<Channel>,
    args: &ClientArgs,
) -> Result<(), DemoError> {
    let headers = parse_headers(&args.headers)?;
    // Start with --category, then cycle through the known categories.
    let mut categories: Vec<String> = vec![args.category.clone()];
    categories.extend(
        CATEGORIES
            .iter()
            .filter(|c| **c != args.category)
            .map(|c| (*c).to_owned()),
    );
    let (tx, rx) = mpsc::channel(4);
    let first = NameRequest {
        category: categories[0].clone(),
    };
    if tx.send(first).await.is_err() {
        return Err("the request stream closed before it started".into());
    }
    let response = client
        .keep_getting_codenames(with_headers(ReceiverStream::new(rx), &headers))
        .await
        .map_err(|s| {
            format!(
                "KeepGettingCodenames failed: {:?}: {}",
                s.code(),
                s.message()
            )
        })?;
    let backend = backend_of(response.metadata());
    println!("streaming from {backend} (category switches every {SWITCH_EVERY:?})");
    let mut names = response.into_inner();

    let started = Instant::now();
    let mut switch =
        tokio::time::interval_at(tokio::time::Instant::now() + SWITCH_EVERY, SWITCH_EVERY);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut current = 0usize;
    let mut received = 0u64;
    let mut failure = None;
    let mut sender = Some(tx);
    while wanted(args.calls, received) {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = switch.tick() => {
                current = (current + 1) % categories.len();
                let next = NameRequest { category: categories[current].clone() };
                println!("-- switching to {}", categories[current]);
                if let Some(tx) = &sender {
                    if tx.send(next).await.is_err() {
                        sender = None;
                    }
                }
            }
            message = names.message() => match message {
                Ok(Some(result)) => {
                    received += 1;
                    let category = category_of(&result.name).unwrap_or(&categories[current]);
                    println!("{backend:<16} {category:<10} {}", result.name);
                }
                Ok(None) => break,
                Err(status) => {
                    failure = Some(format!("stream failed: {:?}: {}", status.code(), status.message()));
                    break;
                }
            },
        }
    }
    // Half-close: the server ends the stream when the client is done.
    drop(sender);
    drop(names);
    println!();
    println!(
        "--- {received} names in {:.2}s from {backend} ---",
        started.elapsed().as_secs_f64()
    );
    println!("stream: {backend}={received}");
    match failure {
        Some(reason) if args.calls.is_some() => Err(reason.into()),
        Some(reason) => {
            println!("{reason}");
            Ok(())
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_lines() {
        let mut t = Tally::default();
        for name in [
            "demo-backend-2",
            "demo-backend-1",
            "demo-backend-2",
            "other",
        ] {
            t.record(name);
        }
        assert_eq!(t.brief(), "[b1: 1  b2: 2  other: 1]");
        assert_eq!(
            t.spread_line(),
            "spread: demo-backend-1=1 demo-backend-2=2 other=1"
        );
        t.errors = 3;
        assert_eq!(
            t.spread_line(),
            "spread: demo-backend-1=1 demo-backend-2=2 other=1 errors=3"
        );
    }
}
