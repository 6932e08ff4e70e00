//! The floor under the compaction's throughput: lists an output root's inbox and reads every
//! landed object as the compaction does (one store read each, its body kept as text), and with
//! `parse` also reads each body as JSON, and nothing else. Prints one JSON line: objects,
//! seconds listing, seconds reading.
//!
//! Usage: inbox-read ROOT [parse]

use std::time::Instant;

use attendance_lake::inbox::{LandedText, Listing, read_paths};
use attendance_lake::store::Store;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(root) = args.get(1) else {
        eprintln!("usage: inbox-read ROOT [parse]");
        std::process::exit(2);
    };
    let parse = args.get(2).is_some_and(|a| a == "parse");
    let store = Store::open(root).expect("ROOT is a usable output root");
    let start = Instant::now();
    let listing = Listing::since(&store, None).await.expect("the inbox lists");
    let listed = start.elapsed().as_secs_f64();
    let (mut objects, mut bytes) = (0usize, 0usize);
    for chunk in listing.chunks(1_000) {
        let landed: Vec<LandedText> = read_paths(&store, &chunk).await.expect("objects read");
        for event in landed {
            objects += 1;
            bytes += event.body.get().len();
            if parse {
                let body: serde_json::Value =
                    serde_json::from_str(event.body.get()).expect("a body is JSON");
                std::hint::black_box(body);
            }
        }
    }
    let read = start.elapsed().as_secs_f64() - listed;
    println!(
        "{{\"objects\": {objects}, \"body_bytes\": {bytes}, \"parse\": {parse}, \"list_seconds\": {listed:.2}, \"read_seconds\": {read:.2}}}"
    );
}
