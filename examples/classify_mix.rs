//! Classifies loadgen's body mix in a loop, for counting the classifier's instructions per body
//! under callgrind (deterministic, unlike timings on a shared machine):
//!
//! ```text
//! cargo build --release --offline --locked --example classify_mix
//! for n in 1 11; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cm-$n.out \
//!     target/release/examples/classify_mix $n; done
//! ```
//!
//! The difference of the two totals over 10 × 2048 bodies is one body's cost. The bodies are
//! bench/src/bin/loadgen's (the seed payloads of tests/fixtures, cycled as text, three statuses,
//! image, three statuses, over 256 conversations, with distinct message ids).

use qikchat_bridge::classify::classify;

const TEXT: &str = include_str!("../tests/fixtures/message-in-text.json");
const IMAGE: &str = include_str!("../tests/fixtures/message-in-image.json");
const STATUS: &str = include_str!("../tests/fixtures/status-read.json");

/// The same bodies, in the same order, as loadgen's `bodies`.
fn bodies() -> Vec<Vec<u8>> {
    let status_as =
        |s: &str| STATUS.replace("\"status\": \"read\"", &format!("\"status\": \"{s}\""));
    let cycle = [
        TEXT.to_string(),
        status_as("sent"),
        status_as("delivered"),
        status_as("read"),
        IMAGE.to_string(),
        status_as("sent"),
        status_as("delivered"),
        status_as("read"),
    ];
    const SEED_ID: &str = "52JH6WmuSruAVyXvBBYemd0Ia";
    let mut out = Vec::with_capacity(256 * cycle.len());
    for conv in 0..256u32 {
        for (k, template) in cycle.iter().enumerate() {
            let id = format!("bench{conv:010}{k:010}");
            let body = template
                .replace("XXXXXXX", &format!("{:07}", 1_000_000 + conv * 7919))
                .replace(SEED_ID, &id);
            out.push(body.into_bytes());
        }
    }
    out
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let bodies = bodies();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let mut accepted = 0usize;
    for _ in 0..rounds {
        for body in &bodies {
            let body = std::hint::black_box(body.as_slice());
            if std::hint::black_box(classify(body)).is_ok() {
                accepted += 1;
            }
        }
    }
    assert_eq!(accepted, rounds * bodies.len(), "every body is valid");
    println!(
        "{rounds} rounds of {} bodies ({:.1} bytes on average)",
        bodies.len(),
        bytes as f64 / bodies.len() as f64
    );
}
