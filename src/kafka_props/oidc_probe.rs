//! A client made without OAUTHBEARER's `oidc` method before the real one, so that a failure to
//! make it is an error rather than librdkafka's abort.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use rdkafka::ClientConfig;

/// librdkafka 2.12 aborts the process when making a client with `sasl.oauthbearer.method=oidc`
/// fails after the method's background thread started (an assertion in a queue's teardown,
/// `rd_kafka_q_destroy0: assert: rkq->rkq_refcnt > 0`, exit 134): a missing CA file, a client key
/// that does not load or does not match its certificate. Without the method the same failure is a
/// clear error. So with `oidc`, the client is first made with the `default` method and no brokers
/// (nothing connects, no token is asked for), and its error, if any, is returned; `None` without
/// `oidc`, or when that client could be made. Blocking (a client is made and destroyed).
pub fn fails_without_oidc(config: &ClientConfig) -> Option<KafkaError> {
    let method = config.get("sasl.oauthbearer.method")?;
    if !method.trim().eq_ignore_ascii_case("oidc") {
        return None;
    }
    let mut probe = config.clone();
    probe
        .set("sasl.oauthbearer.method", "default")
        .remove("bootstrap.servers");
    probe
        .create_with_context::<_, BaseProducer<Unheard>>(Unheard)
        .err()
}

/// The probe's context: its log lines, errors and statistics go nowhere. rdkafka's default
/// context would hand them to the `log` crate, and from there to the bridge's log, past the
/// scrubbing of secrets that the bridge's own producers' context does; the probe's one use, its
/// error, is returned.
struct Unheard;

impl ClientContext for Unheard {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn stats_raw(&self, _: &[u8]) {}
    fn error(&self, _: KafkaError, _: &str) {}
}

impl ProducerContext for Unheard {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "OAUTHBEARER")
            .set("sasl.oauthbearer.client.id", "bridge")
            .set("sasl.oauthbearer.client.secret", "Zq7Wm3Kx9Pv2")
            .set(
                "sasl.oauthbearer.token.endpoint.url",
                "https://idp.example.com/token",
            );
        for (k, v) in pairs {
            config.set(*k, *v);
        }
        config
    }

    #[test]
    fn with_the_oidc_method_a_client_that_cannot_be_made_is_an_error_before_the_real_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("ca.crt");
        let missing = missing.to_str().expect("utf-8");
        let garbage = dir.path().join("tls.key");
        std::fs::write(&garbage, "not a key").expect("write");
        let garbage = garbage.to_str().expect("utf-8");
        for (property, path) in [("ssl.ca.location", missing), ("ssl.key.location", garbage)] {
            let oidc = config(&[("sasl.oauthbearer.method", "OIDC"), (property, path)]);
            let error = fails_without_oidc(&oidc)
                .unwrap_or_else(|| panic!("{property}: made"))
                .to_string();
            assert!(error.contains(property), "{error}");
        }
    }

    #[test]
    fn without_the_oidc_method_or_with_a_client_that_can_be_made_nothing_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("ca.crt");
        let missing = missing.to_str().expect("utf-8");
        // Not probed: librdkafka refuses it itself, cleanly, when the real client is made.
        let default = config(&[("ssl.ca.location", missing)]);
        assert!(fails_without_oidc(&default).is_none());
        let fine = config(&[
            ("sasl.oauthbearer.method", "oidc"),
            ("bootstrap.servers", "127.0.0.1:1"),
        ]);
        assert!(fails_without_oidc(&fine).is_none());
    }
}
