//! The spool's memory stays bounded however much it holds: a long Kafka outage fills the spool,
//! and the process must stay inside the pod's memory limit (alone in its test binary, so the
//! resident set measured is this test's).

use std::sync::Arc;

use qikchat_bridge::spool::{Spool, SpooledRecord};

const MIB: u64 = 1 << 20;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

async fn fill(spool: &Arc<Spool>, records: usize, body: &[u8]) {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (spool, body) = (spool.clone(), body.to_vec());
            tokio::spawn(async move {
                for i in 0..records / 8 {
                    let record = SpooledRecord {
                        topic: "whatsapp.message.status".into(),
                        key: Some(format!("k{t}-{}", i % 4)),
                        value: body.clone(),
                        headers: vec![("request-id".into(), format!("{t}-{i}"))],
                        timestamp_ms: 1_700_000_000_000,
                    };
                    spool.append(record).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("appender");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooling_far_more_than_its_cache_keeps_the_process_memory_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 30, 1).expect("open");
    let body = vec![b'x'; 200 * 1024];
    // Warm up the allocator and the runtime first, so only the spool's growth is measured.
    fill(&spool, 16, &body).await;
    let before = resident_bytes();
    fill(&spool, 640, &body).await;
    let grown = resident_bytes().saturating_sub(before);
    assert!(spool.bytes() > 120 * MIB, "spooled {} bytes", spool.bytes());
    // 128 MiB spooled; redb's default cache would have kept nearly all of it resident.
    assert!(
        grown < 64 * MIB,
        "resident memory grew {} MiB while spooling {} MiB",
        grown / MIB,
        spool.bytes() / MIB
    );
    spool.close();
    drop(spool);

    // Reopening reads the whole file (counting what is there): bounded the same way.
    let before = resident_bytes();
    let spool = Spool::open(dir.path(), 1 << 30, 1).expect("reopen");
    assert_eq!(spool.records(), 656);
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 64 * MIB, "reopening grew {} MiB", grown / MIB);
}
