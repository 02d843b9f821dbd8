//! What the Kafka properties are made from, kept so they can be made again when a file they
//! come from changes: a rotated SASL password (`KAFKA_*_FILE`) or certificate (`ssl.*.location`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{from_sources, KafkaProperties};
use crate::config::ConfigError;

/// The `KAFKA_*` variables, the `-X` flags and the Kafka wait that start-up used.
#[derive(Clone, Default)]
pub struct KafkaSources {
    env: Vec<(String, String)>,
    flags: Vec<String>,
    wait: Duration,
}

/// Variables and flags may hold secrets: only their names are shown.
impl std::fmt::Debug for KafkaSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flags = self.flags.iter().map(|f| f.split('=').next().unwrap_or(""));
        f.debug_struct("KafkaSources")
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("flags", &flags.collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KafkaSources {
    /// Keeps only the `KAFKA_*` entries of `env`.
    pub fn new(
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[String],
        wait: Duration,
    ) -> KafkaSources {
        KafkaSources {
            env: env
                .into_iter()
                .filter(|(k, _)| k.starts_with("KAFKA_"))
                .collect(),
            flags: flags.to_vec(),
            wait,
        }
    }

    /// The properties, with every `KAFKA_*_FILE` read through `read_file` now.
    pub fn properties<R>(&self, read_file: &R) -> Result<KafkaProperties, ConfigError>
    where
        R: Fn(&Path) -> std::io::Result<String>,
    {
        from_sources(self.env.clone(), &self.flags, self.wait, read_file)
    }

    /// The properties, and the files behind them as they were when read: the secrets are
    /// fingerprinted before they are read and librdkafka's files before it reads them (when the
    /// producer is made), so a rotation in between is seen as a change later, never missed.
    pub fn properties_watched<R>(
        &self,
        read_file: &R,
    ) -> Result<(KafkaProperties, Watched), ConfigError>
    where
        R: Fn(&Path) -> std::io::Result<String>,
    {
        let secrets = Watched::read(self.secret_files());
        let properties = self.properties(read_file)?;
        let watched = secrets.with(Watched::read(library_files(&properties)));
        Ok((properties, watched))
    }

    /// The files whose contents end up in a producer: the `KAFKA_*_FILE` secrets, read into
    /// properties, and the files librdkafka reads itself when the producer is made (key,
    /// certificate, CA, CRL, keystore, Kerberos keytab).
    pub fn files(&self, properties: &KafkaProperties) -> Vec<PathBuf> {
        let mut files = self.secret_files();
        files.extend(library_files(properties));
        files.sort();
        files.dedup();
        files
    }

    fn secret_files(&self) -> Vec<PathBuf> {
        self.env
            .iter()
            .filter(|(k, _)| k.ends_with("_FILE"))
            .map(|(_, v)| PathBuf::from(v))
            .collect()
    }
}

fn library_files(properties: &KafkaProperties) -> Vec<PathBuf> {
    properties
        .to_map()
        .into_iter()
        .filter(|(k, _)| k.ends_with(".location") || k == "sasl.kerberos.keytab")
        // `ssl.ca.location=probe` asks librdkafka to search the system's stores.
        .filter(|(k, v)| !(k == "ssl.ca.location" && v == "probe"))
        .map(|(_, v)| PathBuf::from(v))
        .collect()
}

/// Files and a fingerprint of each (SHA-256 of its contents, `None` while it cannot be read: a
/// file that comes back is a change too). Never printed: a short password's hash can be guessed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Watched(Vec<(PathBuf, Option<[u8; 32]>)>);

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.files()).finish()
    }
}

/// SHA-256 of a file's contents; of a directory (`ssl.ca.location` may name one, of OpenSSL's
/// hashed certificate names), of its files' names and contents in name order, so adding,
/// removing or changing a certificate there is a change. `None` when it cannot be read.
fn fingerprint(path: &Path) -> Option<[u8; 32]> {
    if !std::fs::metadata(path).ok()?.is_dir() {
        return std::fs::read(path).ok().map(|b| Sha256::digest(&b).into());
    }
    // `is_file` follows symlinks: a Kubernetes volume's keys are links into `..data`, whose
    // own entries (directories) are skipped.
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default();
        let body = std::fs::read(&file).ok()?;
        for part in [name, &body] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
    }
    Some(hash.finalize().into())
}

impl Watched {
    /// Reads `files` now. Blocking.
    pub fn read(mut files: Vec<PathBuf>) -> Watched {
        files.sort();
        files.dedup();
        Watched(
            files
                .into_iter()
                .map(|f| {
                    let hash = fingerprint(&f);
                    (f, hash)
                })
                .collect(),
        )
    }

    /// The same files read again. Blocking.
    pub fn now(&self) -> Watched {
        Watched::read(self.files())
    }

    /// `files`, keeping the fingerprints already taken of those watched before and reading the
    /// others now. Blocking.
    pub fn rebase(self, files: Vec<PathBuf>) -> Watched {
        let kept = Watched(
            self.0
                .into_iter()
                .filter(|(f, _)| files.contains(f))
                .collect(),
        );
        let new = files.into_iter().filter(|f| !kept.has(f)).collect();
        kept.with(Watched::read(new))
    }

    fn has(&self, file: &Path) -> bool {
        self.0.iter().any(|(f, _)| f == file)
    }

    /// Both sets; where a file is in both, the fingerprint of `self` (taken earlier) is kept.
    fn with(mut self, other: Watched) -> Watched {
        for (file, hash) in other.0 {
            if !self.has(&file) {
                self.0.push((file, hash));
            }
        }
        self.0.sort();
        self
    }

    pub fn files(&self) -> Vec<PathBuf> {
        self.0.iter().map(|(f, _)| f.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_properties_are_made_again_from_the_files_as_they_are_now() {
        let sources = KafkaSources::new(
            env(&[
                ("KAFKA_SASL_PASSWORD_FILE", "/run/secrets/password"),
                ("HOME", "/root"),
            ]),
            &["sasl.username=bridge".to_string()],
            Duration::from_secs(2),
        );
        let read = |text: &'static str| move |_: &Path| Ok(format!("{text}\n"));
        let first = sources.properties(&read("first")).expect("valid");
        let second = sources.properties(&read("second")).expect("valid");
        assert_eq!(first.get("sasl.password"), Some("first"));
        assert_eq!(second.get("sasl.password"), Some("second"));
        assert_eq!(second.get("sasl.username"), Some("bridge"));
        assert_eq!(second.get("message.timeout.ms"), Some("2000"));
    }

    #[test]
    fn a_file_changed_between_start_up_and_the_first_look_is_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = dir.path().join("password");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&password, "first").expect("write");
        std::fs::write(&ca, "first CA").expect("write");
        let sources = KafkaSources::new(
            env(&[(
                "KAFKA_SASL_PASSWORD_FILE",
                password.to_str().expect("utf-8"),
            )]),
            &[format!("ssl.ca.location={}", ca.display())],
            Duration::from_secs(2),
        );
        let (props, watched) = sources
            .properties_watched(&|p: &Path| std::fs::read_to_string(p))
            .expect("valid");
        assert_eq!(watched.files(), sources.files(&props));
        assert_eq!(watched.now(), watched, "nothing changed");
        std::fs::write(&ca, "second CA").expect("write");
        assert_ne!(watched.now(), watched);
        std::fs::remove_file(&password).expect("remove");
        let gone = watched.now();
        std::fs::write(&password, "first").expect("write");
        assert_ne!(gone, gone.now(), "a file that comes back is a change");

        // A new location: the file watched before keeps its old fingerprint, so a rotation
        // between that fingerprint and the rebase is still a change.
        let key = dir.path().join("tls.key");
        std::fs::write(&key, "key").expect("write");
        let before = watched.clone();
        std::fs::write(&password, "rotated").expect("write");
        let rebased = before.rebase(vec![password.clone(), key.clone()]);
        assert_eq!(rebased.files(), [password, key]);
        assert_ne!(rebased.now(), rebased);
    }

    #[test]
    fn a_ca_directory_changes_when_a_certificate_in_it_is_added_changed_or_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cas = dir.path().join("cas");
        std::fs::create_dir(&cas).expect("mkdir");
        std::fs::write(cas.join("1a2b3c4d.0"), "first CA").expect("write");
        let watched = Watched::read(vec![cas.clone()]);
        assert!(
            watched.0[0].1.is_some(),
            "a directory is read, not unreadable"
        );
        assert_eq!(watched.now(), watched, "nothing changed");
        std::fs::create_dir(cas.join("..data")).expect("a subdirectory is no certificate");
        assert_eq!(watched.now(), watched);

        std::fs::write(cas.join("5e6f7a8b.0"), "second CA").expect("write");
        let added = watched.now();
        assert_ne!(added, watched, "a certificate added");
        std::fs::write(cas.join("5e6f7a8b.0"), "second CA, renewed").expect("write");
        let changed = added.now();
        assert_ne!(changed, added, "a certificate changed");
        std::fs::remove_file(cas.join("5e6f7a8b.0")).expect("remove");
        assert_eq!(changed.now(), watched, "back to the first CA alone");

        // The same bytes split differently between name and contents are another directory.
        std::fs::remove_file(cas.join("1a2b3c4d.0")).expect("remove");
        std::fs::write(cas.join("1a2b3c4d.0f"), "irst CA").expect("write");
        assert_ne!(watched.now(), watched);
    }

    #[test]
    fn the_watched_files_are_the_secret_files_and_the_ones_librdkafka_reads() {
        let sources = KafkaSources::new(
            env(&[
                ("KAFKA_SASL_PASSWORD_FILE", "/s/password"),
                ("KAFKA_SSL_KEY_LOCATION", "/tls/tls.key"),
                ("KAFKA_SSL_CA_LOCATION", "probe"),
            ]),
            &[
                "ssl.certificate.location=/tls/tls.crt".to_string(),
                "ssl.key.location=/tls/tls.key".to_string(),
            ],
            Duration::from_secs(2),
        );
        let props = sources
            .properties(&|_: &Path| Ok("pw".into()))
            .expect("valid");
        assert_eq!(
            sources.files(&props),
            ["/s/password", "/tls/tls.crt", "/tls/tls.key"].map(PathBuf::from)
        );
    }
}
