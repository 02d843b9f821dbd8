//! Measures the durable spool's group commit: 256 concurrent writers append seed-sized records
//! and it prints how many fsynced appends per second it sustained, and the file's size. A
//! measurement for the README, not a check: `cargo run --release --example spool_throughput`.

use std::time::Instant;

use qikchat_bridge::spool::{Spool, SpooledRecord};

const WRITERS: usize = 256;
const PER_WRITER: usize = 200;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let spool = Spool::open(dir.path(), 1 << 30, 1)?;
    let body = include_str!("../tests/fixtures/message-in-text.json");
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let spool = spool.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    let record = SpooledRecord {
                        topic: "whatsapp.message.in".into(),
                        key: Some(format!("k{w}")),
                        value: format!("{body}{i}").into_bytes(),
                        headers: vec![("request-id".into(), format!("{w}-{i}"))],
                        timestamp_ms: 1_700_000_000_000,
                    };
                    spool.append(record).await?;
                }
                Ok::<_, qikchat_bridge::spool::SpoolError>(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = WRITERS * PER_WRITER;
    let file: u64 = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{n} durable appends in {secs:.2} s: {:.0} appends/s; file {:.1} MiB for {:.1} MiB of records",
        n as f64 / secs,
        file as f64 / 1048576.0,
        spool.bytes() as f64 / 1048576.0
    );
    assert_eq!(spool.records(), n as u64, "every append is in the spool");
    Ok(())
}
