//! Storage for tests whose reads (or syncs) fail or stall on demand, as a disk's do on a bad
//! sector or a hung network volume.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Spool;

/// What the storage's reads do now.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Fail with an I/O error.
    pub fail: AtomicBool,
    /// Wait until this is cleared.
    pub stall: AtomicBool,
    /// How many reads wait on `stall` now.
    pub stalled: AtomicUsize,
    /// Fail syncs with an I/O error (so every durable commit fails), as a full or failing disk.
    pub fail_syncs: AtomicBool,
    /// Return every page read past the file's header with its bytes flipped, as a disk that
    /// damaged them after the open.
    pub damage: AtomicBool,
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
        if self.reads.stall.load(Ordering::SeqCst) {
            self.reads.stalled.fetch_add(1, Ordering::SeqCst);
            while self.reads.stall.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.reads.stalled.fetch_sub(1, Ordering::SeqCst);
        }
        if self.reads.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected EIO"));
        }
        self.inner.read(offset, out)?;
        // The first page holds the header, which redb keeps in memory once opened.
        if self.reads.damage.load(Ordering::SeqCst) && offset >= 4096 {
            out.iter_mut().for_each(|b| *b = !*b);
        }
        Ok(())
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.reads.fail_syncs.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected EIO on sync"));
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }
}

/// A spool in memory whose reads (and syncs) do what the returned [`Reads`] says.
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
    let spool = Spool::with_database(db, "memory".into(), 1 << 20, 1, None, None, None)
        .expect("spool over memory");
    (spool, reads)
}

/// Storage that keeps what was synced apart from what was only written, as a disk's cache does:
/// [`Synced::crashed`] is the file as a crash may leave it (nothing since the last sync).
#[derive(Debug, Clone, Default)]
pub(crate) struct Synced {
    written: Arc<Mutex<Vec<u8>>>,
    synced: Arc<Mutex<Vec<u8>>>,
    /// Fail syncs with an I/O error, as a full disk.
    pub fail_syncs: Arc<AtomicBool>,
}

impl Synced {
    /// A copy of the synced file, for a spool opened as after a crash.
    pub(crate) fn crashed(&self) -> Synced {
        let synced = lock(&self.synced).clone();
        Synced {
            written: Arc::new(Mutex::new(synced.clone())),
            synced: Arc::new(Mutex::new(synced)),
            fail_syncs: Arc::default(),
        }
    }

    /// A spool over this storage (a new one, or what the storage holds).
    pub(crate) fn spool(&self) -> Arc<Spool> {
        let db = redb::Builder::new()
            .create_with_backend(self.clone())
            .expect("database");
        Spool::with_database(db, "memory".into(), 1 << 20, 1, None, None, None)
            .expect("spool over memory")
    }
}

fn lock(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl redb::StorageBackend for Synced {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(lock(&self.written).len() as u64)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let written = lock(&self.written);
        let start = offset as usize;
        let part = written
            .get(start..start + out.len())
            .ok_or_else(|| std::io::Error::other("read past the end"))?;
        out.copy_from_slice(part);
        Ok(())
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        lock(&self.written).resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected ENOSPC on sync"));
        }
        let written = lock(&self.written).clone();
        *lock(&self.synced) = written;
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut written = lock(&self.written);
        let end = offset as usize + data.len();
        if written.len() < end {
            written.resize(end, 0);
        }
        written[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}
