//! Why librdkafka could not load a client key, where its own error does not say: a key that is
//! encrypted, and a `ssl.key.password` that is missing or does not open it.
//!
//! librdkafka's error is `ssl.key.location failed: error:0A080009:SSL routines::PEM lib` for a
//! wrong password, no password, a cipher OpenSSL 3 no longer reads and a file that holds no key
//! alike. OpenSSL's `bad decrypt`, which it logs while the client is made, is lost with the
//! client: rust-rdkafka forwards librdkafka's log through a queue that only a client that was
//! made is polled for. Another reason (a key that does not match its certificate: `key values
//! mismatch`) says what is wrong, and gets no hint.

use std::io::Read;

/// Where a key can be given: a file, or the PEM text itself.
const KEY_PROPERTIES: [&str; 2] = ["ssl.key.location", "ssl.key.pem"];

/// OpenSSL's reasons for a PEM it could not read (decrypt) at all.
const UNREADABLE: [&str; 3] = ["PEM lib", "bad decrypt", "bad password read"];

/// A key file's start is enough to tell (an encrypted PEM says so in its first lines); more
/// is never read, whatever the property names.
const HEAD_BYTES: u64 = 4096;

/// What to add to librdkafka's `error` when it could not load the client key of the properties
/// `property` looks up and that key is encrypted; `None` otherwise.
pub(super) fn key_hint(
    error: &str,
    property: impl Fn(&str) -> Option<String>,
) -> Option<&'static str> {
    let failed = KEY_PROPERTIES
        .into_iter()
        .find(|name| error.contains(&format!("{name} failed")))?;
    if !UNREADABLE.iter().any(|reason| error.contains(reason)) {
        return None;
    }
    let pem = match failed {
        "ssl.key.location" => head_of(&property(failed)?)?,
        _ => property(failed)?,
    };
    if !encrypted(&pem) {
        return None;
    }
    Some(match property("ssl.key.password") {
        Some(_) => {
            "the key is encrypted: check that ssl.key.password is its password, and that \
             OpenSSL still reads its cipher"
        }
        None => "the key is encrypted, and no ssl.key.password is set",
    })
}

/// PKCS#8's `ENCRYPTED PRIVATE KEY`, or a traditional key's `Proc-Type: 4,ENCRYPTED` header.
fn encrypted(pem: &str) -> bool {
    pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || pem.contains("Proc-Type: 4,ENCRYPTED")
}

/// The first [`HEAD_BYTES`] of the regular file at `path`, as text. Anything else is not opened:
/// the open of a FIFO waits for a writer, which would hold up the error for good.
fn head_of(path: &str) -> Option<String> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(HEAD_BYTES)
        .read_to_end(&mut head)
        .ok()?;
    Some(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILED: &str = "Client creation error: ssl.key.location failed: error:0A080009:SSL \
                          routines::PEM lib";
    const PKCS8: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0w\n";
    const TRADITIONAL: &str = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                               DEK-Info: AES-256-CBC,0123\n\nMIIE\n";
    const PLAIN: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG\n";

    /// The hint for the key file holding `pem`, with `password` set or not, after `error`.
    fn hint_for_file(error: &str, pem: &str, password: Option<&str>) -> Option<&'static str> {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("tls.key");
        std::fs::write(&key, pem).expect("write");
        let key = key.to_str().expect("path").to_string();
        key_hint(error, |name| match name {
            "ssl.key.location" => Some(key.clone()),
            "ssl.key.password" => password.map(str::to_string),
            _ => None,
        })
    }

    #[test]
    fn an_encrypted_key_librdkafka_could_not_load_is_said_to_be_encrypted_with_its_password() {
        for pem in [PKCS8, TRADITIONAL] {
            assert_eq!(
                hint_for_file(FAILED, pem, Some("wrong")),
                Some(
                    "the key is encrypted: check that ssl.key.password is its password, and \
                     that OpenSSL still reads its cipher"
                )
            );
            assert_eq!(
                hint_for_file(FAILED, pem, None),
                Some("the key is encrypted, and no ssl.key.password is set")
            );
        }
    }

    #[test]
    fn a_plain_key_another_failure_a_named_reason_or_a_key_file_that_cannot_be_read_gets_no_hint() {
        assert_eq!(hint_for_file(FAILED, PLAIN, None), None, "not encrypted");
        let other = "Client creation error: ssl.ca.location failed: No such file";
        assert_eq!(hint_for_file(other, PKCS8, None), None, "not the key");
        // The password opened it: OpenSSL names what is wrong.
        let mismatch = "Client creation error: ssl.key.location failed: error:05800074:x509 \
                        certificate routines::key values mismatch";
        assert_eq!(hint_for_file(mismatch, PKCS8, Some("right")), None);
        let gone = key_hint(FAILED, |name| {
            (name == "ssl.key.location").then(|| "/nonexistent/tls.key".to_string())
        });
        assert_eq!(gone, None);
    }

    #[test]
    fn a_pem_given_in_ssl_key_pem_is_looked_at_itself() {
        let error = "Client creation error: ssl.key.pem failed: not in PEM format?: \
                     error:04800068:PEM routines::bad password read";
        let hint = key_hint(error, |name| {
            (name == "ssl.key.pem").then(|| TRADITIONAL.to_string())
        });
        assert_eq!(
            hint,
            Some("the key is encrypted, and no ssl.key.password is set")
        );
        let plain = key_hint(error, |name| {
            (name == "ssl.key.pem").then(|| PLAIN.to_string())
        });
        assert_eq!(plain, None);
    }

    /// A FIFO `fifo.key` made in `dir`: opening it for reading waits for a writer.
    fn fifo_in(dir: &std::path::Path) -> std::path::PathBuf {
        let fifo = dir.join("fifo.key");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        fifo
    }

    /// The hint looks at the key file through [`head_of`] alone: a `ssl.key.location` naming a
    /// FIFO gets no hint at once, where an open of it would hold up librdkafka's error for good.
    #[test]
    fn a_key_location_that_is_no_regular_file_gets_no_hint_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = fifo_in(dir.path()).to_str().expect("path").to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let hint = key_hint(FAILED, |name| {
                (name == "ssl.key.location").then(|| fifo.clone())
            });
            let _ = tx.send(hint);
        });
        let hint = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("answered without opening the FIFO");
        assert_eq!(hint, None);
    }

    /// Only the start of a file is read, and what is not a regular file (a FIFO, whose open
    /// would wait for a writer) is not opened.
    #[test]
    fn only_the_start_of_a_regular_key_file_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let large = dir.path().join("large.key");
        std::fs::write(&large, vec![b'k'; 1 << 20]).expect("write");
        let head = head_of(large.to_str().expect("path")).expect("readable");
        assert_eq!(head.len(), HEAD_BYTES as usize);
        let fifo = fifo_in(dir.path());
        assert_eq!(head_of(fifo.to_str().expect("path")), None);
        assert_eq!(
            head_of(dir.path().to_str().expect("path")),
            None,
            "a directory"
        );
    }
}
