//! `--auth` and `BRIDGE_AUTH`: values split at commas into credentials, named by their place
//! where a comma may have cut a password (their "user" may be a piece of it).

use std::fmt;

use super::{parse_parts, Credential};
use crate::words::ordinal;

/// `--auth`'s credentials (or `BRIDGE_AUTH`'s), and where a value of it was split at commas.
#[derive(Clone, Debug, Default)]
pub struct FlagCredentials {
    pub credentials: Vec<Credential>,
    pub comma_splits: Vec<CommaSplit>,
}

/// One `--auth` value (or `BRIDGE_AUTH`) that held commas: the `count` credentials it was split
/// into, from the `first`th (counted from 1 across every `--auth` value). Said at start-up:
/// a password with a comma is cut into pieces that are accepted as credentials of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommaSplit {
    pub first: usize,
    pub count: usize,
}

impl fmt::Display for CommaSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.first + self.count - 1;
        let after_first = if self.count == 2 {
            format!("The {}'s user is", ordinal(last))
        } else {
            format!(
                "The users of the {} to the {} are",
                ordinal(self.first + 1),
                ordinal(last)
            )
        };
        write!(
            f,
            "an --auth value (or BRIDGE_AUTH) holds commas, so it was split into {} credentials \
             (the {} to the {}): a password cannot contain a comma there, and one that does is \
             cut into pieces that are accepted as credentials of their own while the credential \
             meant is refused (401). Put a credential whose password has a comma in --auth-file \
             (one USER:PASS per line; a comma there is part of the password). {after_first} not \
             shown (in logs, or by --check-config): after a comma, a user may be a piece of a password",
            self.count,
            ordinal(self.first),
            ordinal(last),
        )
    }
}

/// The message naming where `--auth` and `BRIDGE_AUTH` cannot take a password with a comma.
const NO_COMMA_IN_AUTH: &str = "--auth and BRIDGE_AUTH are split at commas, so a password \
     there cannot contain one: put a credential whose password has a comma in --auth-file (one \
     USER:PASS per line; a comma there is part of the password)";

/// The credentials of `--auth`'s values (or `BRIDGE_AUTH`'s), each split at commas. An error
/// names a credential by its place; it quotes the user only of the first credential of a value,
/// as after a comma the text before the next colon may be a piece of the password before it
/// (`eve:abc,def:ghi` is also eve's password `abc,def:ghi`).
pub fn parse_flag(values: &[String]) -> Result<FlagCredentials, String> {
    let mut parsed = FlagCredentials::default();
    for value in values {
        let entries: Vec<&str> = value.split(',').collect();
        let first = parsed.credentials.len() + 1;
        for (i, entry) in entries.iter().enumerate() {
            let place = first + i;
            let credential = match parse_parts(entry) {
                Ok((user, digest)) => Credential {
                    shown: if i == 0 {
                        user.to_string()
                    } else {
                        format!("<the {} --auth credential, user not shown>", ordinal(place))
                    },
                    digest,
                },
                Err((refusal, user)) => {
                    let whose = if i > 0 {
                        " (none of it is shown: after a comma, it may be a piece of an \
                         earlier credential's password)"
                            .to_string()
                    } else if user.is_empty() {
                        String::new()
                    } else {
                        format!(" (user {user:?})")
                    };
                    let mut reason = format!(
                        "the {} credential{whose} {}",
                        ordinal(place),
                        refusal.as_predicate()
                    );
                    if entries.len() > 1 {
                        reason.push_str(". ");
                        reason.push_str(NO_COMMA_IN_AUTH);
                    }
                    return Err(reason);
                }
            };
            parsed.credentials.push(credential);
        }
        if entries.len() > 1 {
            parsed.comma_splits.push(CommaSplit {
                first,
                count: entries.len(),
            });
        }
    }
    Ok(parsed)
}
