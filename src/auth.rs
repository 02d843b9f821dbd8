//! HTTP Basic credentials as Qikchat sends them, checked by their SHA-256 digest.
//!
//! Only SHA-256 digests of `user:pass` are kept, and a presented credential is hashed and its
//! digest looked up among them: the time that takes depends on that digest alone, which no sender
//! can steer, so neither a credential's length nor which one matched leaks through timing, and a
//! wrong one costs the same however many are configured.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use base64::{DecodeSliceError, Engine};
use sha2::{Digest, Sha256};

mod flag;
mod reload;
pub use flag::{parse_flag, CommaSplit, FlagCredentials};
pub use reload::watch_auth_file;

/// The credentials of an `--auth-file` text: one `USER:PASS` per line; `#` comments and blank
/// lines are skipped. An error names the line, never its text.
pub fn parse_file(text: &str) -> Result<Vec<Credential>, String> {
    // A byte-order mark (PowerShell, Windows editors) would be part of the first user's name,
    // which then never matches.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut credentials = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        credentials.push(Credential::parse(line).map_err(|r| format!("line {}: {r}", n + 1))?);
    }
    Ok(credentials)
}

/// `--auth-file` is read again while the bridge runs: its path, and the `--auth` credentials
/// that stay accepted whatever it holds.
#[derive(Clone, Debug)]
pub struct AuthReload {
    pub path: PathBuf,
    pub fixed: Vec<Credential>,
    /// What start-up read from the file, the baseline for the first change: a rotation while the
    /// bridge started (a long spool recovery) is then a change, not taken as applied.
    pub started_with: FileDigest,
}

/// A file's SHA-256, to tell whether it changed; not shown, as the file holds passwords.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileDigest([u8; 32]);

impl FileDigest {
    pub fn of(text: &str) -> FileDigest {
        FileDigest(Sha256::digest(text.as_bytes()).into())
    }
}

impl fmt::Debug for FileDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileDigest(..)")
    }
}

/// One accepted `user:pass`; the password exists only inside the digest.
#[derive(Clone)]
pub struct Credential {
    /// How logs and `--check-config` name it: its user, or, for an `--auth` credential that
    /// followed a comma (whose "user" may be a piece of the password before it), its place.
    shown: String,
    digest: [u8; 32],
}

/// Why a `USER:PASS` text is not a credential, told without any of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    NoColon,
    EmptyUser,
    Space,
    EmptyPassword,
}

impl Refusal {
    /// The reason, for a credential whose user is certain: quoted when there is one.
    fn of_user(self, user: &str) -> String {
        match self {
            Refusal::NoColon => "a credential must be USER:PASS".into(),
            Refusal::EmptyUser => "the user name of a credential cannot be empty".into(),
            Refusal::Space => {
                format!(
                    "the credential of user {user:?} has white space at its start or end, or before its colon (a space, a tab, a newline)"
                )
            }
            Refusal::EmptyPassword => format!("the password of user {user:?} cannot be empty"),
        }
    }

    /// What a credential named by its place is refused for.
    fn as_predicate(self) -> &'static str {
        match self {
            Refusal::NoColon => "is not USER:PASS (it has no colon)",
            Refusal::EmptyUser => "has an empty user name",
            Refusal::Space => "has white space at its start or end, or before its colon (a space, a tab, a newline)",
            Refusal::EmptyPassword => "has an empty password",
        }
    }
}

/// `USER:PASS` → its user and digest (RFC 7617: the user name cannot contain a colon, the
/// password can). On refusal, the user as far as there is one (trimmed), for the caller to quote
/// when it is certain to be a user.
fn parse_parts(text: &str) -> Result<(&str, [u8; 32]), (Refusal, &str)> {
    let Some((user, pass)) = text.split_once(':') else {
        return Err((Refusal::NoColon, ""));
    };
    if user.is_empty() {
        return Err((Refusal::EmptyUser, ""));
    }
    // A space there is a list written `a:b, c:d`: that user or password could never match
    // what the sender means, so it is refused rather than silently accepted as written.
    if text.trim() != text || user.trim() != user {
        return Err((Refusal::Space, user.trim()));
    }
    if pass.is_empty() {
        return Err((Refusal::EmptyPassword, user));
    }
    Ok((user, Sha256::digest(text.as_bytes()).into()))
}

impl Credential {
    /// Parses `USER:PASS`, one whole credential (a line of `--auth-file`, the seed): the text
    /// before the first colon is its user, which an error may quote.
    pub fn parse(text: &str) -> Result<Credential, String> {
        match parse_parts(text) {
            Ok((user, digest)) => Ok(Credential {
                shown: user.to_string(),
                digest,
            }),
            Err((refusal, user)) => Err(refusal.of_user(user)),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:<redacted>", self.shown)
    }
}

/// Why a request was refused; the label of `qikchat_bridge_auth_failures_total`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Basic base64(user:pass)`.
    Malformed,
    /// Well formed, but not a configured credential.
    Wrong,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 3] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Wrong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Wrong => "wrong",
        }
    }
}

/// The set of accepted credentials, or none required (`--insecure-disable-auth`).
#[derive(Clone)]
pub struct Credentials {
    accepted: Vec<Credential>,
    /// The accepted digests, looked up rather than compared one by one: a stranger's request
    /// cost every credential's comparison (0.9 ms at 20,000 users). The lookup's time depends on
    /// the presented digest only, a SHA-256 no sender can steer, so it tells nothing of the
    /// configured ones.
    digests: Arc<HashSet<[u8; 32]>>,
    required: bool,
}

impl Credentials {
    pub fn new(accepted: Vec<Credential>) -> Credentials {
        let digests = Arc::new(accepted.iter().map(|c| c.digest).collect());
        Credentials {
            accepted,
            digests,
            required: true,
        }
    }

    pub fn disabled() -> Credentials {
        Credentials {
            accepted: Vec::new(),
            digests: Arc::default(),
            required: false,
        }
    }

    pub fn required(&self) -> bool {
        self.required
    }

    pub fn users(&self) -> Vec<&str> {
        self.accepted.iter().map(|c| c.shown.as_str()).collect()
    }

    /// Checks the value of an `Authorization` header.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthFailure> {
        if !self.required {
            return Ok(());
        }
        let header = header.ok_or(AuthFailure::Missing)?;
        let digest: [u8; 32] = with_basic(header, |presented| Sha256::digest(presented).into())
            .ok_or(AuthFailure::Malformed)?;
        if self.digests.contains(&digest) {
            Ok(())
        } else {
            Err(AuthFailure::Wrong)
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.required {
            f.debug_list().entries(&self.accepted).finish()
        } else {
            f.write_str("disabled (insecure)")
        }
    }
}

const LENIENT_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Credentials up to this long are decoded on the stack, longer ones on the heap.
const STACK_CREDENTIAL: usize = 256;

/// `Basic <base64>` → `f` of the decoded `user:pass` bytes, or `None` when the header is not
/// that. The scheme is case-insensitive (RFC 7235); padding may be omitted, since some clients do.
fn with_basic<R>(header: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let header = header.trim_ascii();
    let (scheme, rest) = header.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let encoded = rest.trim_ascii();
    let user_pass = |decoded: &[u8]| decoded.contains(&b':').then(|| f(decoded));
    let mut buf = [0u8; STACK_CREDENTIAL];
    match LENIENT_BASE64.decode_slice(encoded, &mut buf) {
        Ok(len) => user_pass(&buf[..len]),
        Err(DecodeSliceError::OutputSliceTooSmall) => {
            user_pass(&LENIENT_BASE64.decode(encoded).ok()?)
        }
        Err(DecodeSliceError::DecodeError(_)) => None,
    }
}

#[cfg(test)]
mod tests;
