//! Writes N third-party instance documents, one a line, as another HR system would export them
//! (the simulated tenant's data set over its 24 approval codes): for the `external load` and
//! `external push` benchmarks. Prints one JSON line: documents written, bytes, seconds.
//!
//! With `--spread`, each slice of 10,000 instances starts 81 days before the previous one, so
//! that a date holds as many instances whatever N (a longer history, not a busier one).
//!
//! Usage: external-instances FILE N [SEED] [--spread]

use std::io::Write;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: external-instances FILE N [SEED] [--spread]");
        std::process::exit(2);
    }
    let n: usize = args[2].parse().expect("N is a number");
    let seed: u64 = args
        .get(3)
        .filter(|a| !a.starts_with("--"))
        .map_or(42, |s| s.parse().expect("SEED is a number"));
    let spread = args.iter().any(|a| a == "--spread");
    let started = Instant::now();
    let codes = attendance_sim::external_approval_codes(42, 24);
    // 2026-11-01T00:00:00Z: fixed, so that the same N always makes the same file.
    let anchor_ms = 1_793_491_200_000;
    let file = std::fs::File::create(&args[1]).expect("FILE can be created");
    let mut out = std::io::BufWriter::new(file);
    let mut bytes = 0usize;
    // In slices, so that a 200,000-document file does not hold them all at once.
    let slice = 10_000;
    for first in (0..n).step_by(slice) {
        let count = slice.min(n - first);
        let slice_anchor = if spread {
            anchor_ms - (first / slice) as i64 * 81 * 86_400_000
        } else {
            anchor_ms
        };
        let docs =
            attendance_sim::external_documents(seed + first as u64, count, &codes, slice_anchor);
        for (i, mut doc) in docs.into_iter().enumerate() {
            // Ids unique across slices.
            let id = format!("hr-{:07}", first + i);
            renumber(&mut doc, &id);
            let line = serde_json::to_string(&doc).expect("a document serializes");
            bytes += line.len() + 1;
            out.write_all(line.as_bytes()).unwrap();
            out.write_all(b"\n").unwrap();
        }
    }
    out.flush().unwrap();
    println!(
        "{{\"documents\":{n},\"bytes\":{bytes},\"seconds\":{:.3}}}",
        started.elapsed().as_secs_f64()
    );
}

/// Gives a document, its tasks and its ccs ids under `id`.
fn renumber(doc: &mut serde_json::Value, id: &str) {
    doc["instance_id"] = serde_json::json!(id);
    for (list, key, tag) in [("task_list", "task_id", "t"), ("cc_list", "cc_id", "c")] {
        if let Some(items) = doc[list].as_array_mut() {
            for (j, item) in items.iter_mut().enumerate() {
                item[key] = serde_json::json!(format!("{id}-{tag}{j}"));
            }
        }
    }
}
