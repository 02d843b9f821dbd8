//! What the Kafka properties are made from, kept so they can be made again when a file they
//! come from changes: a rotated SASL password (`KAFKA_*_FILE`) or certificate (`ssl.*.location`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::names::{flag_properties, variable_property};
use super::{from_sources, Defaults, KafkaProperties};
use crate::config::ConfigError;

/// The `KAFKA_*` variables, the `-X` flags and the limits that start-up used.
#[derive(Clone)]
pub struct KafkaSources {
    env: Vec<(String, String)>,
    flags: Vec<String>,
    limits: Defaults,
}

impl Default for KafkaSources {
    fn default() -> KafkaSources {
        KafkaSources::new(
            Vec::new(),
            &[],
            Defaults {
                wait: Duration::ZERO,
                max_body_bytes: 0,
            },
        )
    }
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
        limits: Defaults,
    ) -> KafkaSources {
        KafkaSources {
            env: env
                .into_iter()
                .filter(|(k, _)| k.starts_with("KAFKA_"))
                .collect(),
            flags: flags.to_vec(),
            limits,
        }
    }

    /// The properties, with every `KAFKA_*_FILE` read through `read_file` now.
    pub fn properties<R>(&self, read_file: &R) -> Result<KafkaProperties, ConfigError>
    where
        R: Fn(&Path) -> std::io::Result<String>,
    {
        from_sources(self.env.clone(), &self.flags, self.limits, read_file)
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
        let flagged = flag_properties(&self.flags);
        self.env
            .iter()
            .filter(|(k, _)| k.ends_with("_FILE"))
            .filter(|(k, _)| variable_property(k).is_none_or(|p| !flagged.contains(&p)))
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
        return crate::operator_file::read(path)
            .ok()
            .map(|b| Sha256::digest(&b).into());
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
        let body = crate::operator_file::read(&file).ok()?;
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
mod tests;
