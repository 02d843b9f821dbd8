//! Storage for tests whose reads fail or stall on demand, as a disk's do on a bad sector or a
//! hung network volume.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Spool;

/// What the storage's reads do now.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Fail with an I/O error.
    pub fail: AtomicBool,
    /// Wait until this is cleared.
    pub stall: AtomicBool,
}

#[derive(Debug)]
struct FaultyReads {
    inner: redb::backends::InMemoryBackend,
    reads: Arc<Reads>,
}

impl redb::StorageBackend for FaultyReads {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        while self.reads.stall.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.reads.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected EIO"));
        }
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }
}

/// A spool in memory whose reads do what the returned [`Reads`] says.
pub(crate) fn spool_over_faulty_reads() -> (Arc<Spool>, Arc<Reads>) {
    let reads = Arc::new(Reads::default());
    let backend = FaultyReads {
        inner: redb::backends::InMemoryBackend::new(),
        reads: reads.clone(),
    };
    // No page cache, so that reads reach the storage.
    let db = redb::Builder::new()
        .set_cache_size(0)
        .create_with_backend(backend)
        .expect("database");
    let spool = Spool::with_database(db, "memory".into(), 1 << 20, 1).expect("spool over memory");
    (spool, reads)
}
