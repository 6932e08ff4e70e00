//! Pushes N distinct approval events to a webhook receiver, C at a time, each signed and
//! encrypted as the platform does, and prints one JSON line: events, seconds, events per second,
//! ack latency p50 / p99 / max (ms), and answers other than 200.
//!
//! Usage: events-load URL N C [ENCRYPT_KEY] [VERIFICATION_TOKEN] [RUN_TAG]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use attendance_feishu::envelope::{EncryptKey, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use futures::StreamExt;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: events-load URL N CONCURRENCY [ENCRYPT_KEY] [VERIFICATION_TOKEN] [RUN_TAG]"
        );
        std::process::exit(2);
    }
    let url = args[1].clone();
    let n: usize = args[2].parse().expect("N is a number");
    let concurrency: usize = args[3].parse().expect("CONCURRENCY is a number");
    let key = args
        .get(4)
        .filter(|k| !k.is_empty())
        .map(|k| EncryptKey::new(k));
    let token = args.get(5).cloned().unwrap_or_else(|| "bench-token".into());
    let tag = args
        .get(6)
        .cloned()
        .unwrap_or_else(|| format!("{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        // Bodies are prepared before the clock starts: the generator's crypto is not the
        // receiver's cost.
        let bodies: Vec<(String, String, String)> = (0..n)
            .map(|i| {
                let event = serde_json::json!({
                    "ts": "1764460800.5", "uuid": format!("bench{tag}x{i:010}"), "token": token,
                    "type": "event_callback",
                    "event": {"type": "leave_approvalV2", "instance_code": format!("I{i}"),
                        "approval_code": "A", "user_id": format!("u{}", i % 5000),
                        "leave_start_time": "2026-11-30 09:00:00", "leave_end_time": "2026-11-30 18:00:00",
                        "leave_interval": 28800, "leave_unit": "DAY", "leave_reason": "bench",
                        "i18n_resources": "[{is_default=true,locale=zh_cn,texts={@i18n@1=事假}}]",
                        "leave_range": "[[2026-11-30 09:00:00,2026-11-30 18:00:00]]",
                        "tenant_key": "t", "app_id": "cli_bench"}
                })
                .to_string();
                match &key {
                    Some(key) => {
                        let mut iv = [0u8; 16];
                        iv[..8].copy_from_slice(&(i as u64).to_le_bytes());
                        let body = serde_json::json!({"encrypt": key.encrypt(event.as_bytes(), iv)}).to_string();
                        let nonce = format!("n{i}");
                        let signature = key.signature("1764460800", &nonce, body.as_bytes());
                        (body, nonce, signature)
                    }
                    None => (event, String::new(), String::new()),
                }
            })
            .collect();
        let non_200 = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut latencies: Vec<f64> = futures::stream::iter(bodies)
            .map(|(body, nonce, signature)| {
                let http = http.clone();
                let url = url.clone();
                let non_200 = Arc::clone(&non_200);
                async move {
                    let sent = Instant::now();
                    let mut request = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body);
                    if !signature.is_empty() {
                        request = request
                            .header(TIMESTAMP_HEADER, "1764460800")
                            .header(NONCE_HEADER, nonce)
                            .header(SIGNATURE_HEADER, signature);
                    }
                    match request.send().await {
                        Ok(r) if r.status().as_u16() == 200 => {
                            let _ = r.bytes().await;
                        }
                        _ => {
                            non_200.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    sent.elapsed().as_secs_f64() * 1000.0
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let seconds = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        println!(
            "{}",
            serde_json::json!({
                "events": n, "concurrency": concurrency, "seconds": seconds,
                "per_sec": n as f64 / seconds, "p50_ms": at(0.50), "p99_ms": at(0.99),
                "max_ms": latencies.last().copied().unwrap_or(0.0),
                "non_200": non_200.load(Ordering::Relaxed),
            })
        );
    });
}
