//! What an operator should hear about the chosen settings at start-up: one list, logged by `run`
//! and printed by `--check-config`, so the two cannot say different things.

use crate::config::{Config, KafkaMode};

const EMBEDDED_KAFKA: &str = "EMBEDDED KAFKA: no --kafka-brokers given, so records live only in \
     this process's memory and are lost when it stops. For local use only.";
const SEED_CREDENTIAL_IN_USE: &str = "no credentials configured: accepting Qikchat's documented \
     example credential (the README's; embedded mode only)";
const AUTH_DISABLED: &str =
    "authentication is DISABLED (--insecure-disable-auth): anyone can post webhooks";

/// One warning about the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Warning {
    EmbeddedKafka,
    SeedCredential,
    /// A caveat of a setting's value (see [`Config::caveats`]).
    Caveat(String),
    AuthDisabled,
}

/// The warnings `config` earns, in the order start-up logs them.
pub(crate) fn of(config: &Config) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if matches!(config.kafka, KafkaMode::Embedded) {
        warnings.push(Warning::EmbeddedKafka);
    }
    if config.seed_credential_in_use {
        warnings.push(Warning::SeedCredential);
    }
    warnings.extend(config.caveats().into_iter().map(Warning::Caveat));
    if !config.credentials.required() {
        warnings.push(Warning::AuthDisabled);
    }
    warnings
}

/// Logs each of `config`'s warnings at `warn`.
pub(crate) fn log(config: &Config) {
    for warning in of(config) {
        match warning {
            // The user as a field of its own, as log readers filter on it.
            Warning::SeedCredential => {
                tracing::warn!(user = seed_user(), "{SEED_CREDENTIAL_IN_USE}")
            }
            other => tracing::warn!("{other}"),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::EmbeddedKafka => f.write_str(EMBEDDED_KAFKA),
            Warning::SeedCredential => {
                write!(f, "{SEED_CREDENTIAL_IN_USE} (user {})", seed_user())
            }
            Warning::Caveat(text) => f.write_str(text),
            Warning::AuthDisabled => f.write_str(AUTH_DISABLED),
        }
    }
}

/// The user of the example credential. The user only: the password is public (Qikchat's docs,
/// the README), but a log that shows one teaches readers that passwords appear there.
fn seed_user() -> &'static str {
    crate::config::SEED_CREDENTIAL
        .split_once(':')
        .map_or("", |(user, _)| user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flags: &[&str]) -> Config {
        use clap::Parser as _;
        let argv = ["qikchat-bridge"].iter().chain(flags);
        let args = crate::config::Args::try_parse_from(argv).expect("flags parse");
        let no_files = |_: &std::path::Path| Err(std::io::ErrorKind::NotFound.into());
        Config::from_args(args, std::iter::empty(), no_files).expect("valid")
    }

    /// Anyone can post webhooks once authentication is off: start-up and --check-config say so,
    /// and only then, where a warning given always would teach operators to read past it (found
    /// by mutation testing: the condition turned around passed every test).
    #[test]
    fn authentication_disabled_is_warned_of_exactly_when_it_is() {
        let brokers = ["--kafka-brokers", "kafka:9092"];
        let disabled = config(&[&brokers[..], &["--insecure-disable-auth"]].concat());
        assert_eq!(of(&disabled), vec![Warning::AuthDisabled]);
        assert_eq!(
            Warning::AuthDisabled.to_string(),
            "authentication is DISABLED (--insecure-disable-auth): anyone can post webhooks"
        );
        let required = config(&[&brokers[..], &["--auth", "qikchat:pa55word"]].concat());
        assert_eq!(of(&required), vec![]);
        // The embedded Kafka with the example credential: that credential is required.
        assert_eq!(
            of(&config(&[])),
            vec![Warning::EmbeddedKafka, Warning::SeedCredential]
        );
    }

    #[test]
    fn the_seed_credentials_warning_names_its_user_and_never_its_password() {
        let (user, password) = crate::config::SEED_CREDENTIAL
            .split_once(':')
            .expect("user:password");
        let text = Warning::SeedCredential.to_string();
        assert!(text.ends_with(&format!("(user {user})")), "{text}");
        assert!(!text.contains(password), "{text}");
    }
}
