//! weir must not only work with tonic: the same checks with Python's grpcio
//! (installed by .ci/run from PyPI).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_through_weir() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_grpc = std::process::Command::new(&python)
        .args(["-c", "import grpc"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        has_grpc,
        "Python grpcio is required for this test: python3 -m pip install grpcio"
    );
    let servers = echo_servers(3).await;
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let proxy = start_proxy(&http_config(&addrs, "")).await;
    let addr = fe_addr(&proxy);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/grpc_client.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(addr.to_string())
        .output();
    let out = within(60, out).await.expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("python grpcio: all checks passed"),
        "{stdout}"
    );
}
