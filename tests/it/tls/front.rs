//! The TLS half of a broker in front of librdkafka's mock cluster (which speaks no TLS), and the
//! test's own certificate authorities: the front's listener speaks TLS with a server certificate,
//! optionally requires a client certificate its CA signed (mTLS) and admits only the subject CNs
//! it is told, and then runs the SASL front's relay ([`serve`]) over the TLS stream, with SASL
//! (SASL_SSL) or without (SSL).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsAcceptor;

use crate::sasl::front::{serve, Accepts, Outcome};

/// A certificate authority of the test's own.
pub struct Ca {
    pub pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate its CA signed, and its key, in PEM (what librdkafka reads) and DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("a self-signed CA");
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A broker's certificate, for the address the front names itself by (127.0.0.1).
    pub fn server(&self) -> Leaf {
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        self.leaf("broker", names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client's certificate with the subject CN `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        self.leaf(cn, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, cn: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(names).expect("parameters");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// One TLS connection the front took: its client certificate's subject CN, if it sent one, and
/// whether it was admitted (relayed) or closed after the handshake.
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    pub cn: Option<String>,
    pub admitted: bool,
}

#[derive(Default)]
struct State {
    connections: Mutex<Vec<Connection>>,
    failed_handshakes: AtomicUsize,
    /// The CNs admitted; `None`: any client the handshake took.
    admitted: Mutex<Option<Vec<String>>>,
    /// The connections' tasks, to drop them.
    live: Mutex<Vec<AbortHandle>>,
}

/// The front: its address, what it saw, and its SASL outcomes (with SASL).
pub struct TlsFront {
    pub addr: SocketAddr,
    state: Arc<State>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
}

impl TlsFront {
    /// A front relaying to the mock broker at `mock`, presenting `server`; with `client_ca`,
    /// requiring a client certificate that CA signed; with `sasl`, authenticating as
    /// `SaslFront` does.
    pub async fn start(
        mock: &str,
        server: &Leaf,
        client_ca: Option<&Ca>,
        sasl: Option<Accepts>,
    ) -> TlsFront {
        let mock: SocketAddr = mock.parse().expect("mock address");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.der.clone()).expect("a CA certificate");
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("a client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone()));
        let config = builder
            .with_single_cert(vec![server.der.clone()], key)
            .expect("the server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let (kept, kept_outcomes) = (state.clone(), outcomes.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), kept.clone());
                let (sasl, outcomes) = (sasl.clone(), kept_outcomes.clone());
                // Spawned and listed under the lock: `drop_connections` misses none.
                let mut live = kept.live.lock().expect("live");
                live.retain(|task| !task.is_finished());
                let task = tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        state.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let cn =
                        tls.get_ref().1.peer_certificates().and_then(|chain| {
                            chain.first().and_then(|cert| subject_cn(cert.as_ref()))
                        });
                    // Judged and listed under one lock, so that `admit_only` splits them.
                    let admitted = {
                        let rule = state.admitted.lock().expect("admitted");
                        let admitted = match &*rule {
                            None => true,
                            Some(cns) => cn.as_ref().is_some_and(|cn| cns.contains(cn)),
                        };
                        let seen = Connection { cn, admitted };
                        state.connections.lock().expect("connections").push(seen);
                        admitted
                    };
                    if admitted {
                        let _ = serve(tls, mock, addr, sasl.as_ref(), &outcomes).await;
                    }
                });
                live.push(task.abort_handle());
            }
        });
        TlsFront {
            addr,
            state,
            outcomes,
        }
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.state.connections.lock().expect("connections").clone()
    }

    pub fn failed_handshakes(&self) -> usize {
        self.state.failed_handshakes.load(Ordering::SeqCst)
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().expect("outcomes").clone()
    }

    /// Asserts that it took connections, every handshake succeeded, and each was admitted with a
    /// client certificate naming `cn` (or none, for `None`).
    pub fn all_admitted_as(&self, cn: Option<&str>) {
        let seen = self.connections();
        assert!(
            !seen.is_empty() && self.failed_handshakes() == 0,
            "{seen:?}"
        );
        let expected = Connection {
            cn: cn.map(str::to_string),
            admitted: true,
        };
        assert!(seen.iter().all(|c| *c == expected), "{seen:?}");
    }

    /// Asserts that it authenticated clients, each with `mechanism` as `user`, and refused none.
    pub fn all_authenticated_as(&self, mechanism: &str, user: &str) {
        let outcomes = self.outcomes();
        assert!(!outcomes.is_empty(), "no SASL authentication");
        assert!(
            outcomes
                .iter()
                .all(|(m, u, ok)| m == mechanism && u == user && *ok),
            "{outcomes:?}"
        );
    }

    /// From now on, admits only clients whose certificate names `cn`, and drops every connection
    /// it has (as a broker restarted with a new truststore would). Returns how many connections
    /// it had seen before: those after are judged by the new rule.
    pub fn admit_only(&self, cn: &str) -> usize {
        let seen = {
            let mut rule = self.state.admitted.lock().expect("admitted");
            *rule = Some(vec![cn.to_string()]);
            self.state.connections.lock().expect("connections").len()
        };
        for task in self.state.live.lock().expect("live").drain(..) {
            task.abort();
        }
        seen
    }
}

/// The subject CN of a certificate (DER) this test made: the value after the last commonName
/// attribute (OID 2.5.4.3), since the subject follows the issuer and its extensions name none.
fn subject_cn(der: &[u8]) -> Option<String> {
    const CN: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(CN.len()).rposition(|w| w == CN)? + CN.len();
    // A string type (UTF8String, PrintableString) and a short-form length.
    let len = usize::from(*der.get(at + 1)?);
    let value = der.get(at + 2..at + 2 + len)?;
    Some(String::from_utf8_lossy(value).into_owned())
}
