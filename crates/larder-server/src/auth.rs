//! Access control: who may push, and whether anyone may read.
//!
//! Without credentials configured, everyone may read and write (unless the server is
//! read-only). With an [`Access`] list, a write — any method but `GET`, `HEAD`, `OPTIONS` and
//! `PROPFIND` — needs a bearer token or a basic-auth user from the list, and so does a read when
//! anonymous reads are off. Missing or wrong credentials are answered 401 with a
//! `WWW-Authenticate` challenge, so that clients that wait for one (curl, sccache) send theirs.
//!
//! The credentials file has one credential per line; `#` starts a comment:
//!
//! ```text
//! # CI machines push with a token (ccache: |bearer-token=..., Bazel: --remote_header)
//! token 3f8a1c9e0b7d4f26a5e1c8b09d7f3a42
//! # a user with a password (ccache and sccache: http://ci:secret@host/...)
//! user ci secret
//! # or with the password's SHA-256, so the file holds no password
//! user nightly sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b
//! ```

use std::path::Path;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::Digest as _;

use crate::error::ServerError;

/// One accepted credential.
#[derive(Clone)]
enum Credential {
    Token([u8; 32]),
    User { name: String, password: [u8; 32] },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::User { name, .. } => write!(f, "User({name}, ..)"),
        }
    }
}

/// The credentials that may push (and read, when anonymous reads are off).
///
/// Secrets are kept as SHA-256 digests and compared in constant time.
#[derive(Debug, Clone, Default)]
pub struct Access {
    credentials: Vec<Credential>,
    /// Whether reads need no credentials (default: yes).
    pub anonymous_reads: bool,
}

fn sha256(s: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(s).into()
}

/// Constant-time equality of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

impl Access {
    /// Nobody needs credentials (the default).
    pub fn open() -> Access {
        Access {
            credentials: Vec::new(),
            anonymous_reads: true,
        }
    }

    /// Whether any credential is configured.
    pub fn enabled(&self) -> bool {
        !self.credentials.is_empty()
    }

    /// Accept bearer token `token`.
    pub fn with_token(mut self, token: &str) -> Access {
        self.credentials
            .push(Credential::Token(sha256(token.as_bytes())));
        self
    }

    /// Accept basic-auth user `name` with `password`.
    pub fn with_user(mut self, name: &str, password: &str) -> Access {
        self.credentials.push(Credential::User {
            name: name.to_owned(),
            password: sha256(password.as_bytes()),
        });
        self
    }

    /// Read a credentials file (see the module docs).
    ///
    /// # Errors
    /// [`ServerError::Auth`] naming the file and line of anything unreadable.
    pub fn from_file(path: &Path) -> Result<Access, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Auth {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        Access::parse(&text).map_err(|message| ServerError::Auth {
            file: path.display().to_string(),
            message,
        })
    }

    fn parse(text: &str) -> Result<Access, String> {
        let mut access = Access::open();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let cred = match words.as_slice() {
                ["token", token] if token.len() >= 16 => {
                    Credential::Token(sha256(token.as_bytes()))
                }
                ["token", _] => {
                    return Err(format!(
                        "line {}: a token must be at least 16 characters",
                        n + 1
                    ));
                }
                ["user", name, password] => {
                    let digest = match password.strip_prefix("sha256:") {
                        Some(hex) => parse_hex32(hex).ok_or_else(|| {
                            format!("line {}: sha256: needs 64 hex digits", n + 1)
                        })?,
                        None => sha256(password.as_bytes()),
                    };
                    Credential::User {
                        name: (*name).to_owned(),
                        password: digest,
                    }
                }
                _ => {
                    return Err(format!(
                        "line {}: expected `token TOKEN` or `user NAME PASSWORD`",
                        n + 1
                    ));
                }
            };
            access.credentials.push(cred);
        }
        if access.credentials.is_empty() {
            return Err("no credentials in the file".into());
        }
        Ok(access)
    }

    /// Whether `headers` carry a credential from the list.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let got = sha256(rest.as_bytes());
            return self
                .credentials
                .iter()
                .any(|c| matches!(c, Credential::Token(t) if same(t, &got)));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return false;
            };
            let Ok(decoded) = String::from_utf8(decoded) else {
                return false;
            };
            let Some((user, password)) = decoded.split_once(':') else {
                return false;
            };
            let got = sha256(password.as_bytes());
            // A token also works as a basic-auth password (for clients that only do basic).
            return self.credentials.iter().any(|c| match c {
                Credential::User { name, password } => name == user && same(password, &got),
                Credential::Token(t) => same(t, &got),
            });
        }
        false
    }
}

fn is_read(method: &Method) -> bool {
    matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "PROPFIND")
}

/// The 401 answer to `request`, when [`Access`] refuses it (the health check is always open).
pub(crate) fn refusal(access: &Access, request: &Request) -> Option<Response> {
    let needs_credentials = access.enabled()
        && request.uri().path() != "/healthz"
        && (!is_read(request.method()) || !access.anonymous_reads);
    if !needs_credentials || access.admits(request.headers()) {
        return None;
    }
    let what = if request.headers().contains_key(header::AUTHORIZATION) {
        "wrong credentials\n"
    } else {
        "credentials needed: a bearer token or a basic-auth user\n"
    };
    let mut resp = (StatusCode::UNAUTHORIZED, what).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"larder\", charset=\"UTF-8\""),
    );
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(auth).expect("header"),
        );
        h
    }

    fn basic(user: &str, password: &str) -> String {
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn file_format_and_checks() {
        let a = Access::parse(
            "# comment\ntoken 0123456789abcdef0123\n\nuser ci secret # trailing\nuser n sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n",
        )
        .expect("parses");
        assert!(a.admits(&headers("Bearer 0123456789abcdef0123")));
        assert!(!a.admits(&headers("Bearer 0123456789abcdef0124")));
        assert!(a.admits(&headers(&basic("ci", "secret"))));
        assert!(!a.admits(&headers(&basic("ci", "Secret"))));
        assert!(!a.admits(&headers(&basic("other", "secret"))));
        // sha256("secret")
        assert!(a.admits(&headers(&basic("n", "secret"))));
        // A token as a basic password.
        assert!(a.admits(&headers(&basic("anyone", "0123456789abcdef0123"))));
        assert!(!a.admits(&headers("Basic !!!")));
        assert!(!a.admits(&HeaderMap::new()));
    }

    #[test]
    fn bad_files_name_the_line() {
        let e = Access::parse("token short\n").expect_err("short token");
        assert!(e.contains("line 1") && e.contains("16"), "{e}");
        let e = Access::parse("user onlyname\n").expect_err("no password");
        assert!(e.contains("line 1"), "{e}");
        let e = Access::parse("# nothing\n").expect_err("empty");
        assert!(e.contains("no credentials"), "{e}");
    }
}
