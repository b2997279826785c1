//! `Balancer::pick()` per algorithm, with 4, 64 and 1024 servers: every
//! server accepts, or the odd-numbered half refuses (full, say).
//!
//! cargo bench --bench balance -- --warm-up-time 1 --measurement-time 2

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weir::backend::balance::{self, Balancer, PickCtx};
use weir::backend::server::Server;
use weir::config;

fn servers(n: usize) -> Vec<Arc<Server>> {
    (0..n)
        .map(|i| {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16));
            let c = config::Server::new(
                &format!("s{i}"),
                config::Loc::default(),
                addr,
                &addr.to_string(),
            );
            Arc::new(Server::from_config(&c))
        })
        .collect()
}

fn algorithms() -> Vec<(&'static str, config::Balance, config::HashType)> {
    let map = config::HashType::default();
    let ring = config::HashType {
        method: config::HashMethod::Consistent,
        ..Default::default()
    };
    vec![
        ("roundrobin", config::Balance::RoundRobin, map),
        ("static-rr", config::Balance::StaticRr, map),
        ("leastconn", config::Balance::LeastConn, map),
        ("first", config::Balance::First, map),
        ("source-map", config::Balance::Source, map),
        ("source-consistent", config::Balance::Source, ring),
        ("random", config::Balance::Random { draws: 2 }, map),
        (
            "ewma",
            config::Balance::Ewma {
                decay: Duration::from_secs(10),
            },
            map,
        ),
    ]
}

fn pick(c: &mut Criterion) {
    for (name, algo, ht) in algorithms() {
        let mut g = c.benchmark_group(format!("pick/{name}"));
        for n in [4usize, 64, 1024] {
            let servers = servers(n);
            if matches!(algo, config::Balance::Ewma { .. }) {
                // Measured servers: scores decay with time (an exp() each).
                for (i, s) in servers.iter().enumerate() {
                    s.ewma
                        .observe(Duration::from_micros(100 + i as u64 % 7 * 50));
                }
            }
            let b: Box<dyn Balancer> = balance::build(&algo, &ht, &servers);
            let hashes = algo.hashes();
            for (variant, refuse_odd) in [("all-accept", false), ("half-refuse", true)] {
                let mut key = 0u64;
                g.bench_function(BenchmarkId::new(variant, n), |bench| {
                    bench.iter(|| {
                        key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                        let ctx = PickCtx {
                            hash: hashes.then_some(key),
                        };
                        let r = b.pick(&servers, &ctx, &mut |s| {
                            !refuse_odd || s.addr.port() % 2 == 0
                        });
                        black_box(r)
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, pick);
criterion_main!(benches);
