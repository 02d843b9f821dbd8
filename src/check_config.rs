//! `--check-config`: what start-up would refuse, found without connecting to anything.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// Port 0 cannot be connected to: the token request fails before anything is sent.
const OFFLINE_TOKEN_ENDPOINT: &str = "http://127.0.0.1:0/check-config";

/// A setting start-up would refuse. The text never holds a property's value.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("--spool-dir: {} is not a directory", .0.display())]
    SpoolDirNotDirectory(PathBuf),
    /// Start-up would fail to create, lock or open the spool (a directory of another user, a
    /// volume mounted read-only).
    #[error("--spool-dir: this process cannot write to {}: {}", .0.display(), .1)]
    SpoolDirNotWritable(PathBuf, std::io::Error),
    #[error("Kafka producer settings: {0}")]
    Kafka(String),
}

impl CheckError {
    /// The flag whose value was refused, when one was.
    pub fn setting(&self) -> Option<&str> {
        match self {
            CheckError::SpoolDirNotDirectory(_) | CheckError::SpoolDirNotWritable(..) => {
                Some("--spool-dir")
            }
            CheckError::Kafka(_) => None,
        }
    }
}

/// Validates what start-up would, short of connecting: librdkafka checks every property name
/// and value when it builds its configuration, and the properties together (`acks` against
/// idempotence) and the files they name (TLS keys, CAs) when it makes the producer.
pub fn check(config: &Config) -> Result<(), CheckError> {
    spool_dir(config)?;
    let mut kafka = rdkafka::ClientConfig::new();
    let properties = config.producer_properties("");
    // From the operator's values, the endpoint's too: librdkafka's refusals may quote them. (Its
    // log lines go nowhere: `--check-config` sets up no log.)
    let scrubber = crate::kafka_props::Scrubber::new(&properties);
    // No brokers: the producer made below then never tries to connect (nor to resolve a name).
    for (k, v) in &properties {
        match k.as_str() {
            "bootstrap.servers" => {}
            // With the `oidc` method a new client asks for a token at once, which would send
            // the client secret to the identity provider (and wait for its answer) only to check
            // a configuration. An endpoint that refuses at once stands in; librdkafka's checks
            // of the method's settings (an endpoint is required, the grant's fields) still run.
            // An empty one is librdkafka's missing one (mandatory with `oidc`): kept, so that it
            // is refused here as at start-up.
            "sasl.oauthbearer.token.endpoint.url" if !v.is_empty() => {
                kafka.set(k, OFFLINE_TOKEN_ENDPOINT);
            }
            _ => {
                kafka.set(k, v);
            }
        }
    }
    crate::kafka_props::fails_without_oidc(&kafka)
        .map_or_else(
            || kafka.create::<rdkafka::producer::BaseProducer>().map(drop),
            Err,
        )
        .map_err(|e| {
            let error = crate::kafka_props::ClientError::from_client(e, scrubber.into(), &kafka);
            CheckError::Kafka(error.to_string())
        })
}

/// What start-up would warn of, in the order it would (those of its own environment too: the
/// log filter, the spool's volume, the open-file limit, as this process finds them).
pub fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    warnings.extend(crate::telemetry::filter_warning());
    warnings.extend(crate::open_files::warning(config.max_connections));
    warnings.extend(
        crate::start_warnings::of(config)
            .iter()
            .map(ToString::to_string),
    );
    if let Some(dir) = &config.spool_dir {
        warnings.extend(crate::spool::volume_warning(dir, config.spool_max_bytes));
    }
    warnings
}

/// `--spool-dir` names a file, or a path under one, or one this process cannot write to:
/// refused at start-up too, before anything starts, with the same exit code.
pub fn spool_dir(config: &Config) -> Result<(), CheckError> {
    let Some(dir) = config.spool_dir.as_deref() else {
        return Ok(());
    };
    if let Some(file) = not_a_directory(dir) {
        return Err(CheckError::SpoolDirNotDirectory(file.to_path_buf()));
    }
    match crate::spool::unwritable(dir) {
        Some((path, e)) => Err(CheckError::SpoolDirNotWritable(path, e)),
        None => Ok(()),
    }
}

/// What start-up would refuse at once: `dir`, or the nearest of its parents that exists (the
/// rest is made then), when it is something else.
fn not_a_directory(dir: &Path) -> Option<&Path> {
    let existing = crate::spool::nearest_existing(dir);
    (!existing.is_dir()).then_some(existing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_dir_is_refused_when_it_or_its_nearest_existing_parent_is_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(not_a_directory(&file), Some(file.as_path()));
        assert_eq!(
            not_a_directory(&file.join("a/b")),
            Some(file.as_path()),
            "a path under a file"
        );
        assert_eq!(not_a_directory(dir.path()), None, "a directory");
        assert_eq!(
            not_a_directory(&dir.path().join("new/spool")),
            None,
            "made at start-up"
        );
    }
}
