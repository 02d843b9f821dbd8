//! Reading the files an operator points the bridge at (credentials, Kafka secrets and client
//! files): regular files only, so a pipe or device put there cannot block a read for good.
//!
//! Opening a FIFO for reading waits for a writer, and reading it waits for data: at start-up
//! that hung the bridge (and `--check-config`) without a word, and in the reload loops it stopped
//! every later rotation, a revoked credential included, with nothing logged.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The file's contents. Fails at once on anything but a regular file (a symlink to one is fine).
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

fn open(path: &Path) -> io::Result<File> {
    // Non-blocking, so that opening a FIFO returns at once instead of waiting for a writer;
    // reads of a regular file are not affected by the flag.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file (a pipe or a device, whose read could block for good)"
        };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `f` on another thread, failing the test (after 5 s) instead of hanging it if `f` blocks.
    fn without_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the read blocked")
    }

    #[test]
    fn a_fifo_is_refused_at_once_instead_of_blocking_the_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("password");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let error = without_blocking(move || read_to_string(&fifo)).expect_err("a FIFO");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn a_regular_file_reached_through_symlinks_is_read_and_a_directory_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        // As Kubernetes mounts a Secret's key: a link through `..data` to the real file.
        std::fs::create_dir(dir.path().join("..2026_12_04")).expect("dir");
        std::fs::write(dir.path().join("..2026_12_04/password"), "s3cret\n").expect("write");
        std::os::unix::fs::symlink("..2026_12_04", dir.path().join("..data")).expect("link");
        let key = dir.path().join("password");
        std::os::unix::fs::symlink("..data/password", &key).expect("link");
        assert_eq!(read_to_string(&key).expect("read"), "s3cret\n");
        assert_eq!(read(&key).expect("read"), b"s3cret\n");
        let error = read(dir.path()).expect_err("a directory");
        assert!(error.to_string().contains("a directory"), "{error}");
    }
}
