//! The SASL half of a Kafka broker, in front of librdkafka's mock cluster (which speaks no SASL):
//! it answers SaslHandshake and SaslAuthenticate itself, checking PLAIN, SCRAM-SHA-256/512 (RFC
//! 5802/7677, the server side) and OAUTHBEARER (RFC 7628) credentials as Kafka does, then relays.
//! [`serve`] takes any stream, so that `tls::front` runs it behind TLS, with SASL or without.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What the front accepts.
#[derive(Clone, Default)]
pub struct Accepts {
    /// (user, password) pairs, for PLAIN and SCRAM: a user may have two during a rotation.
    pub users: Vec<(String, String)>,
    /// The one OAUTHBEARER token taken.
    pub bearer: Option<String>,
}

/// One SaslAuthenticate outcome: (mechanism, principal, accepted).
pub type Outcome = (String, String, bool);

/// The front: its address, and each SaslAuthenticate outcome it gave.
pub struct SaslFront {
    pub addr: SocketAddr,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
}

impl Accepts {
    pub fn user(user: &str, password: &str) -> Accepts {
        Accepts {
            users: vec![(user.to_string(), password.to_string())],
            bearer: None,
        }
    }

    fn passwords(&self, user: &str) -> Vec<&str> {
        self.users
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, p)| p.as_str())
            .collect()
    }
}

impl SaslFront {
    /// A front relaying to the mock broker at `mock`, taking what `accepts` holds.
    pub async fn start(mock: &str, accepts: Accepts) -> SaslFront {
        let mock: SocketAddr = mock.parse().expect("mock address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let kept = outcomes.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (accepts, outcomes) = (accepts.clone(), kept.clone());
                tokio::spawn(async move {
                    let _ = serve(client, mock, addr, Some(&accepts), &outcomes).await;
                });
            }
        });
        SaslFront { addr, outcomes }
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().expect("outcomes").clone()
    }
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// A non-flexible request's (api key, version, correlation id, body).
fn request_parts(req: &[u8]) -> (i16, i16, [u8; 4], &[u8]) {
    let client_id = i16_at(req, 8).max(0) as usize;
    (
        i16_at(req, 0),
        i16_at(req, 2),
        [req[4], req[5], req[6], req[7]],
        &req[10 + client_id..],
    )
}

/// A SaslAuthenticate v0/v1 answer.
fn authenticate_answer(corr: [u8; 4], version: i16, error: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = corr.to_vec();
    match error {
        None => {
            out.extend_from_slice(&0i16.to_be_bytes());
            out.extend_from_slice(&(-1i16).to_be_bytes());
        }
        Some(message) => {
            // SASL_AUTHENTICATION_FAILED, with the message Kafka sends.
            out.extend_from_slice(&58i16.to_be_bytes());
            out.extend_from_slice(&(message.len() as i16).to_be_bytes());
            out.extend_from_slice(message.as_bytes());
        }
    }
    out.extend_from_slice(&(data.len() as i32).to_be_bytes());
    out.extend_from_slice(data);
    if version >= 1 {
        out.extend_from_slice(&0i64.to_be_bytes()); // session_lifetime_ms
    }
    out
}

#[derive(Clone, Copy)]
enum Alg {
    Sha256,
    Sha512,
}

impl Alg {
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Alg::Sha256 => Sha256::digest(data).to_vec(),
            Alg::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut mac =
                <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Alg::Sha256 => mac::<Hmac<Sha256>>(key, msg),
            Alg::Sha512 => mac::<Hmac<Sha512>>(key, msg),
        }
    }

    /// SCRAM's Hi(): PBKDF2 with HMAC, one hash's length of output.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Alg::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            Alg::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }
}

/// Where a SCRAM exchange is.
struct Scram {
    alg: Alg,
    user: String,
    first_bare: String,
    server_first: String,
    nonce: String,
}

const SALT: &[u8] = b"qikchat-bridge-salt";
const ITERATIONS: u32 = 4096;

/// One client connection of the front at `me`, relayed to `mock`: with `accepts`, once it has
/// authenticated with SASL; without, from its first request (a broker's SSL listener). Both
/// directions run in this one future, so that dropping it closes the client's connection.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    mock: SocketAddr,
    me: SocketAddr,
    accepts: Option<&Accepts>,
    outcomes: &Mutex<Vec<Outcome>>,
) -> std::io::Result<()> {
    let mut upstream = TcpStream::connect(mock).await?;
    let mut mechanism = String::new();
    let mut scram: Option<Scram> = None;
    let record = |mechanism: &str, who: &str, ok: bool| {
        outcomes
            .lock()
            .expect("outcomes")
            .push((mechanism.to_string(), who.to_string(), ok));
    };
    // Until the client has authenticated: one request, one answer.
    while let Some(accepts) = accepts {
        let req = read_frame(&mut client).await?;
        let (key, version, corr, body) = request_parts(&req);
        match key {
            // ApiVersions: the mock's answer with SaslHandshake v0-1 and SaslAuthenticate v0-1.
            18 => {
                upstream.write_all(&framed(&req)).await?;
                let mut resp = read_frame(&mut upstream).await?;
                if version <= 2 && i16_at(&resp, 4) == 0 {
                    let count = i32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]]);
                    let end = 10 + count as usize * 6;
                    let added: Vec<u8> = [17i16, 0, 1, 36, 0, 1]
                        .iter()
                        .flat_map(|v| v.to_be_bytes())
                        .collect();
                    resp.splice(end..end, added);
                    resp[6..10].copy_from_slice(&(count + 2).to_be_bytes());
                }
                client.write_all(&framed(&resp)).await?;
            }
            // SaslHandshake.
            17 => {
                let len = i16_at(body, 0).max(0) as usize;
                mechanism = String::from_utf8_lossy(&body[2..2 + len]).into_owned();
                let offered = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];
                let mut resp = corr.to_vec();
                let error: i16 = if offered.contains(&mechanism.as_str()) {
                    0
                } else {
                    33
                };
                resp.extend_from_slice(&error.to_be_bytes());
                resp.extend_from_slice(&(offered.len() as i32).to_be_bytes());
                for m in offered {
                    resp.extend_from_slice(&(m.len() as i16).to_be_bytes());
                    resp.extend_from_slice(m.as_bytes());
                }
                client.write_all(&framed(&resp)).await?;
            }
            // SaslAuthenticate.
            36 => {
                let len = i32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
                let data = &body[4..4 + len];
                let text = String::from_utf8_lossy(data).into_owned();
                let (answer, done) = match mechanism.as_str() {
                    "PLAIN" => {
                        let parts: Vec<&str> = text.split('\0').collect();
                        let (user, pass) = (parts.get(1).copied(), parts.get(2).copied());
                        let ok = user.is_some_and(|u| {
                            pass.is_some_and(|p| accepts.passwords(u).contains(&p))
                        });
                        record("PLAIN", user.unwrap_or(""), ok);
                        let error =
                            (!ok).then_some("Authentication failed: Invalid username or password");
                        (authenticate_answer(corr, version, error, b""), Some(ok))
                    }
                    "OAUTHBEARER" => {
                        let token = text
                            .split('\u{1}')
                            .find_map(|kv| kv.strip_prefix("auth=Bearer "))
                            .unwrap_or("");
                        let ok = accepts.bearer.as_deref() == Some(token);
                        record("OAUTHBEARER", token, ok);
                        let error = (!ok).then_some("Authentication failed: invalid token");
                        (authenticate_answer(corr, version, error, b""), Some(ok))
                    }
                    m if m.starts_with("SCRAM-SHA-") => {
                        let alg = if m == "SCRAM-SHA-256" {
                            Alg::Sha256
                        } else {
                            Alg::Sha512
                        };
                        match scram.take() {
                            None => {
                                // client-first: "n,,n=USER,r=NONCE"
                                let bare = text.strip_prefix("n,,").unwrap_or("").to_string();
                                let user = bare
                                    .split(',')
                                    .find_map(|a| a.strip_prefix("n="))
                                    .unwrap_or("")
                                    .to_string();
                                let cnonce = bare
                                    .split(',')
                                    .find_map(|a| a.strip_prefix("r="))
                                    .unwrap_or("");
                                let nonce = format!("{cnonce}srvNonce42");
                                let server_first =
                                    format!("r={nonce},s={},i={ITERATIONS}", B64.encode(SALT));
                                let answer = authenticate_answer(
                                    corr,
                                    version,
                                    None,
                                    server_first.as_bytes(),
                                );
                                scram = Some(Scram {
                                    alg,
                                    user,
                                    first_bare: bare,
                                    server_first,
                                    nonce,
                                });
                                (answer, None)
                            }
                            Some(s) => {
                                // client-final: "c=biws,r=NONCE,p=PROOF"
                                let (without_proof, proof) =
                                    text.rsplit_once(",p=").unwrap_or(("", ""));
                                let auth_message =
                                    format!("{},{},{without_proof}", s.first_bare, s.server_first);
                                let nonce_ok = without_proof.contains(&format!(",r={}", s.nonce));
                                let verdict =
                                    accepts.passwords(&s.user).into_iter().find_map(|password| {
                                        let salted =
                                            s.alg.hi(password.as_bytes(), SALT, ITERATIONS);
                                        let client_key = s.alg.hmac(&salted, b"Client Key");
                                        let stored_key = s.alg.hash(&client_key);
                                        let signature =
                                            s.alg.hmac(&stored_key, auth_message.as_bytes());
                                        let expected: Vec<u8> = client_key
                                            .iter()
                                            .zip(&signature)
                                            .map(|(a, b)| a ^ b)
                                            .collect();
                                        let server_key = s.alg.hmac(&salted, b"Server Key");
                                        (B64.encode(expected) == proof).then(|| {
                                            s.alg.hmac(&server_key, auth_message.as_bytes())
                                        })
                                    });
                                let ok = nonce_ok && verdict.is_some();
                                record(m, &s.user, ok);
                                let answer = if ok {
                                    let signature = &verdict.expect("verdict");
                                    let last = format!("v={}", B64.encode(signature));
                                    authenticate_answer(corr, version, None, last.as_bytes())
                                } else {
                                    let message = format!(
                                        "Authentication failed during authentication due to \
                                         invalid credentials with SASL mechanism {m}"
                                    );
                                    authenticate_answer(corr, version, Some(&message), b"")
                                };
                                (answer, Some(ok))
                            }
                        }
                    }
                    _ => return Ok(()),
                };
                client.write_all(&framed(&answer)).await?;
                match done {
                    Some(true) => break,
                    // Kafka closes the connection after a failed authentication.
                    Some(false) => return Ok(()),
                    None => {}
                }
            }
            // Anything else before authentication: a broker with a SASL listener closes.
            _ => return Ok(()),
        }
    }
    // Authenticated: relay, naming this front, not the mock, as the broker in the answers.
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let requests = async move {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
        // The answers still due are relayed until the mock closes.
        std::future::pending::<()>().await
    };
    let mut from = b"127.0.0.1".to_vec();
    from.extend_from_slice(&i32::from(mock.port()).to_be_bytes());
    let mut to = b"127.0.0.1".to_vec();
    to.extend_from_slice(&i32::from(me.port()).to_be_bytes());
    let answers = async move {
        loop {
            let mut resp = read_frame(&mut upstream_read).await?;
            let mut at = 0;
            while let Some(i) = resp[at..].windows(from.len()).position(|w| w == from) {
                resp[at + i..at + i + to.len()].copy_from_slice(&to);
                at += i + to.len();
            }
            client_write.write_all(&framed(&resp)).await?;
        }
    };
    tokio::select! {
        () = requests => Ok(()),
        done = answers => done,
    }
}
