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
//! loadgen's mix (bench/src/bin/loadgen/mix.rs) of the seed payloads in tests/fixtures.

use qikchat_bridge::classify::classify;

const TEXT: &str = include_str!("../tests/fixtures/message-in-text.json");
const IMAGE: &str = include_str!("../tests/fixtures/message-in-image.json");
const STATUS: &str = include_str!("../tests/fixtures/status-read.json");

#[path = "../bench/src/bin/loadgen/mix.rs"]
mod mix;

/// The same bodies, in the same order, as loadgen's.
fn bodies() -> Vec<Vec<u8>> {
    mix::mix(TEXT, IMAGE, STATUS)
        .into_iter()
        .map(String::into_bytes)
        .collect()
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
