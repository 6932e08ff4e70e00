//! The floor under the compaction's throughput: lists an output root's inbox and reads every
//! landed object as the compaction does (one store read each, its body kept as text), or with
//! `journals` lists the inbox and reads the journals instead, and with `parse` also reads each
//! body as JSON, and nothing else. Prints one JSON line: events, seconds listing, seconds
//! reading.
//!
//! Usage: inbox-read ROOT [parse] [journals]

use std::time::Instant;

use attendance_lake::inbox::{LandedText, Listing, read_journals, read_paths};
use attendance_lake::store::Store;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(root) = args.get(1) else {
        eprintln!("usage: inbox-read ROOT [parse] [journals]");
        std::process::exit(2);
    };
    let parse = args[2..].iter().any(|a| a == "parse");
    let from_journals = args[2..].iter().any(|a| a == "journals");
    let store = Store::open(root).expect("ROOT is a usable output root");
    let start = Instant::now();
    let listing = Listing::since(&store, None).await.expect("the inbox lists");
    let journals = if from_journals {
        Listing::journals_since(&store, None)
            .await
            .expect("the journals list")
    } else {
        Listing::default()
    };
    let listed = start.elapsed().as_secs_f64();
    let (mut objects, mut bytes) = (0usize, 0usize);
    let read = if from_journals { &journals } else { &listing };
    let at_once = if from_journals { 32 } else { 1_000 };
    for chunk in read.chunks(at_once) {
        let landed: Vec<LandedText> = if from_journals {
            read_journals(&store, &chunk).await.expect("journals read")
        } else {
            read_paths(&store, &chunk).await.expect("objects read")
        };
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
    let reading = start.elapsed().as_secs_f64() - listed;
    println!(
        "{{\"events\": {objects}, \"body_bytes\": {bytes}, \"parse\": {parse}, \"journals\": {from_journals}, \"list_seconds\": {listed:.2}, \"read_seconds\": {reading:.2}}}"
    );
}
