//! What the Kafka properties are made from, kept so they can be made again when a file they
//! come from changes: a rotated SASL password (`KAFKA_*_FILE`) or certificate (`ssl.*.location`).

use std::path::{Path, PathBuf};
use std::time::Duration;

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

    /// The files whose contents end up in a producer: the `KAFKA_*_FILE` secrets, read into
    /// properties, and the files librdkafka reads itself when the producer is made (key,
    /// certificate, CA, CRL, keystore, Kerberos keytab).
    pub fn files(&self, properties: &KafkaProperties) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .env
            .iter()
            .filter(|(k, _)| k.ends_with("_FILE"))
            .map(|(_, v)| PathBuf::from(v))
            .collect();
        files.extend(
            properties
                .to_map()
                .into_iter()
                .filter(|(k, _)| k.ends_with(".location") || k == "sasl.kerberos.keytab")
                // `ssl.ca.location=probe` asks librdkafka to search the system's stores.
                .filter(|(k, v)| !(k == "ssl.ca.location" && v == "probe"))
                .map(|(_, v)| PathBuf::from(v)),
        );
        files.sort();
        files.dedup();
        files
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
