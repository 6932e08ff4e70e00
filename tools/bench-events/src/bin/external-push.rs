//! Pushes an instance file into a simulated tenant that allows 50 requests a second and 1000 a
//! minute per API (the platform's limits), through the job's client at its defaults (the same),
//! and prints one JSON line: instances sent, seconds spent sending, requests a second, the share
//! of 50 a second reached, and the answers over the limit. For the `external push` benchmark.
//!
//! Usage: external-push FILE OUT_DIR [--check-first]

use std::sync::Arc;

use attendance_external::push::{PushRequest, push};
use attendance_feishu::{Client, ClientConfig, Credentials};
use attendance_lake::store::Store;
use attendance_sim::{SimConfig, SimTenant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: external-push FILE OUT_DIR [--check-first]");
        std::process::exit(2);
    }
    let tenant = SimTenant::start(SimConfig {
        users: 5,
        rate_limit_per_sec: 50,
        ..SimConfig::default()
    })
    .await
    .expect("the tenant starts");
    let config = tenant.config();
    let client = Client::new(ClientConfig::new(
        tenant.base_url(),
        Credentials {
            app_id: config.app_id.clone(),
            app_secret: config.app_secret.clone(),
        },
    ))
    .expect("a client");
    std::fs::create_dir_all(&args[2]).unwrap();
    let store = Arc::new(Store::open(&args[2]).expect("OUT_DIR opens"));
    let request = PushRequest {
        source: args[1].clone(),
        run_id: "external-push-bench".into(),
        force: !args.iter().any(|a| a == "--check-first"),
        concurrency: 16,
    };
    let summary = push(&client, store, &request).await.expect("the push runs");
    let stats = tenant.stats();
    println!(
        "{{\"sent\":{},\"seconds\":{:.3},\"requests_per_second\":{:.2},\"share_of_limit\":{:.4},\"check_requests\":{},\"answered_429\":{}}}",
        summary.sent,
        summary.send_seconds,
        summary.requests_per_second,
        summary.requests_per_second / 50.0,
        summary.check_requests,
        stats.rate_limited
    );
    tenant.shutdown().await;
}
