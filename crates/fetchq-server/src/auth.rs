//! Bearer tokens and their scopes: parsing `FETCHQ_TOKENS` or a tokens file,
//! constant-time checking, and the extractors that guard each endpoint.

use std::fmt;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::error::ApiError;
use crate::state::AppState;

/// What a token may do. `admin` implies every other scope.
///
/// ```
/// use fetchq_server::Scope;
/// assert_eq!("push".parse::<Scope>().unwrap(), Scope::Push);
/// assert!("root".parse::<Scope>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// See queues, documents, logs and metrics.
    Read,
    /// Add documents.
    Push,
    /// Pick documents, resolve them and extend their leases.
    Work,
    /// Manage queues and settings, act on documents without a lease.
    Admin,
}

impl Scope {
    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Push => 2,
            Scope::Work => 4,
            Scope::Admin => 8,
        }
    }

    /// The scope's name as written in `FETCHQ_TOKENS`.
    ///
    /// ```
    /// assert_eq!(fetchq_server::Scope::Work.as_str(), "work");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Push => "push",
            Scope::Work => "work",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, TokenError> {
        match s.trim() {
            "read" => Ok(Scope::Read),
            "push" => Ok(Scope::Push),
            "work" => Ok(Scope::Work),
            "admin" => Ok(Scope::Admin),
            other => Err(TokenError::UnknownScope(other.chars().take(40).collect())),
        }
    }
}

/// A set of scopes granted to one token.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Whether this set allows `scope` (`admin` allows everything).
    ///
    /// ```
    /// use fetchq_server::{Scope, Tokens};
    /// let (tokens, secret) = Tokens::generate_admin();
    /// let scopes = tokens.authenticate(secret.as_bytes()).unwrap();
    /// assert!(scopes.allows(Scope::Work));
    /// ```
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & Scope::Admin.bit() != 0 || self.0 & scope.bit() != 0
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [Scope::Read, Scope::Push, Scope::Work, Scope::Admin]
            .into_iter()
            .filter(|s| self.0 & s.bit() != 0)
            .map(Scope::as_str)
            .collect();
        write!(f, "{}", names.join("+"))
    }
}

/// Why a token specification was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// An entry without `=`.
    #[error("token entry {0} is not SCOPES=SECRET (e.g. read+push=s3cr3t)")]
    Malformed(usize),
    /// A scope that is not read, push, work or admin.
    #[error("unknown scope {0:?}: use read, push, work or admin joined with +")]
    UnknownScope(String),
    /// An entry with an empty secret.
    #[error("token entry {0} has an empty secret")]
    EmptySecret(usize),
    /// The same secret given twice.
    #[error("token entry {0} repeats the secret of an earlier entry")]
    Duplicate(usize),
    /// Reading the tokens file failed.
    #[error("cannot read the tokens file: {0}")]
    Io(String),
}

/// The configured tokens: secrets with their scopes. `Debug` never shows a secret.
///
/// ```
/// use fetchq_server::{Scope, Tokens};
/// let tokens = Tokens::parse("admin=s3cr3t-admin,read=viewer-123,push+work=worker-7x").unwrap();
/// let worker = tokens.authenticate(b"worker-7x").unwrap();
/// assert!(worker.allows(Scope::Work) && !worker.allows(Scope::Admin));
/// assert!(tokens.authenticate(b"nope-nope").is_none());
/// assert!(!format!("{tokens:?}").contains("viewer"));
/// ```
#[derive(Clone, Default)]
pub struct Tokens {
    /// Scopes, the SHA-256 of the secret, and its length. Presented tokens
    /// are hashed and the digests compared, so the time of a check tells
    /// nothing about a secret, not even its length (`[u8]::ct_eq` returns at
    /// once when the lengths differ).
    entries: Vec<(Scopes, [u8; 32], usize)>,
}

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(s, _, _)| s))
            .finish()
    }
}

impl Tokens {
    /// Parses comma- or newline-separated `SCOPES=SECRET` entries (scopes
    /// joined with `+`); blank entries and lines starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// [`TokenError`] naming the first bad entry (1-based), never its secret.
    ///
    /// ```
    /// assert!(fetchq_server::Tokens::parse("admin=s3cr3t-long").is_ok());
    /// assert!(fetchq_server::Tokens::parse("root=s3cr3t-long").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Tokens, TokenError> {
        let mut entries: Vec<(Scopes, [u8; 32], usize)> = Vec::new();
        let items = spec
            .split(['\n', ','])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in items.enumerate() {
            let n = i + 1;
            let (scopes, secret) = entry.split_once('=').ok_or(TokenError::Malformed(n))?;
            let mut bits = 0u8;
            for name in scopes.split('+') {
                bits |= name.parse::<Scope>()?.bit();
            }
            let secret = secret.trim();
            if secret.is_empty() {
                return Err(TokenError::EmptySecret(n));
            }
            let hash = digest(secret.as_bytes());
            if entries.iter().any(|(_, h, _)| *h == hash) {
                return Err(TokenError::Duplicate(n));
            }
            entries.push((Scopes(bits), hash, secret.len()));
        }
        Ok(Tokens { entries })
    }

    /// Reads [`Tokens::parse`]'s format from a file, one entry a line.
    ///
    /// # Errors
    ///
    /// [`TokenError::Io`] or a parse error.
    ///
    /// ```no_run
    /// let tokens = fetchq_server::Tokens::from_file("/etc/fetchq/tokens").unwrap();
    /// # let _ = tokens;
    /// ```
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Tokens, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenError::Io(e.to_string()))?;
        Tokens::parse(&text)
    }

    /// One fresh random admin token (what `fetchq serve` does when no token is
    /// configured); returns the tokens and the secret to hand to the user.
    ///
    /// ```
    /// let (tokens, secret) = fetchq_server::Tokens::generate_admin();
    /// assert_eq!(secret.len(), 64);
    /// assert!(tokens.authenticate(secret.as_bytes()).is_some());
    /// ```
    pub fn generate_admin() -> (Tokens, String) {
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let tokens = Tokens {
            entries: vec![(
                Scopes(Scope::Admin.bit()),
                digest(secret.as_bytes()),
                secret.len(),
            )],
        };
        (tokens, secret)
    }

    /// The length of the shortest secret, to warn about guessable ones.
    ///
    /// ```
    /// let tokens = fetchq_server::Tokens::parse("admin=s3cr3t,read=viewer,push+work=worker-7").unwrap();
    /// assert_eq!(tokens.shortest_secret(), Some(6));
    /// ```
    pub fn shortest_secret(&self) -> Option<usize> {
        self.entries.iter().map(|(_, _, n)| *n).min()
    }

    /// Whether no token is configured.
    ///
    /// ```
    /// assert!(fetchq_server::Tokens::parse("").unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The scopes of the token `presented`, compared in constant time against
    /// every configured secret (their SHA-256 digests: the time depends on
    /// neither the secrets nor their lengths).
    ///
    /// ```
    /// let tokens = fetchq_server::Tokens::parse("read=viewer-123").unwrap();
    /// assert!(tokens.authenticate(b"viewer-123").is_some());
    /// assert!(tokens.authenticate(b"viewer-12").is_none());
    /// ```
    pub fn authenticate(&self, presented: &[u8]) -> Option<Scopes> {
        let mut found = 0u8;
        let presented = digest(presented);
        for (scopes, secret, _) in &self.entries {
            // visit every entry: the time does not tell which one matched
            let hit = secret.ct_eq(&presented);
            found |= u8::conditional_select(&0, &scopes.0, hit);
        }
        (found != 0).then_some(Scopes(found))
    }
}

/// The cookie in which the console keeps the signed-in token (hex-encoded).
pub const SESSION_COOKIE: &str = "fetchq_session";

/// The header a cookie-signed request must carry to change anything: the
/// [`csrf_token`] of its session.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How a request presented its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Presented {
    /// `Authorization: Bearer` or `?token=`: the caller chose to send it.
    Explicit(String),
    /// The console's cookie: a browser sends it by itself, so a change needs
    /// the CSRF header too.
    Cookie(String),
}

/// The secret of a request: `Authorization: Bearer SECRET`, `?token=SECRET`,
/// or the console's session cookie.
pub(crate) fn presented_token(parts: &Parts) -> Option<Presented> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (kind, secret) = value.split_once(' ')?;
        return kind
            .eq_ignore_ascii_case("bearer")
            .then(|| Presented::Explicit(secret.trim().to_owned()));
    }
    let query = parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let secret = pair.strip_prefix("token=")?;
            Some(percent_decode(secret))
        })
    });
    match query {
        Some(secret) => Some(Presented::Explicit(secret)),
        None => session_cookie(&parts.headers).map(Presented::Cookie),
    }
}

/// The token kept in the session cookie, if any.
pub(crate) fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE)
                .then(|| from_hex(value.trim()))
                .flatten()
        })
}

/// `secret` as lowercase hex (the cookie's encoding: any secret fits a cookie).
pub(crate) fn to_hex(secret: &[u8]) -> String {
    secret.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) || text.len() > 8192 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The CSRF token of a session: derived from its secret, so a page of any
/// signed-in tab can act and a site that does not know the secret cannot.
///
/// ```
/// let a = fetchq_server::csrf_token("s3cr3t-admin");
/// assert_eq!(a.len(), 64);
/// assert_ne!(a, fetchq_server::csrf_token("s3cr3t-admin2"));
/// ```
pub fn csrf_token(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"fetchq console csrf\0");
    h.update(secret.as_bytes());
    to_hex(&h.finalize())
}

/// Whether a request presenting `presented` may go on: a cookie-signed
/// request that changes something needs the session's CSRF header.
fn csrf_ok(parts: &Parts, presented: &Presented) -> bool {
    let Presented::Cookie(secret) = presented else {
        return true;
    };
    if parts.method.is_safe() {
        return true;
    }
    let expected = csrf_token(secret);
    parts
        .headers
        .get(CSRF_HEADER)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(expected.as_bytes())))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(if b == b'+' { b' ' } else { b });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Marker types naming the scope an endpoint needs.
pub mod need {
    /// A scope marker.
    pub trait Need: Send + Sync + 'static {
        /// The scope.
        const SCOPE: super::Scope;
    }
    /// Needs `read`.
    #[derive(Debug)]
    pub struct Read;
    /// Needs `push`.
    #[derive(Debug)]
    pub struct Push;
    /// Needs `work`.
    #[derive(Debug)]
    pub struct Work;
    /// Needs `admin`.
    #[derive(Debug)]
    pub struct Admin;
    impl Need for Read {
        const SCOPE: super::Scope = super::Scope::Read;
    }
    impl Need for Push {
        const SCOPE: super::Scope = super::Scope::Push;
    }
    impl Need for Work {
        const SCOPE: super::Scope = super::Scope::Work;
    }
    impl Need for Admin {
        const SCOPE: super::Scope = super::Scope::Admin;
    }
}

/// Extractor: the request carries a known token (else 401) with scope `N`
/// (else 403). Put it first in a handler's arguments, so a request without
/// the right token is refused before its body is read.
#[derive(Debug)]
pub struct Authorized<N>(PhantomData<N>);

impl<N: need::Need> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = presented_token(parts).ok_or_else(ApiError::unauthorized)?;
        let secret = match &presented {
            Presented::Explicit(s) | Presented::Cookie(s) => s,
        };
        let scopes = state
            .tokens
            .authenticate(secret.as_bytes())
            .ok_or_else(ApiError::unauthorized)?;
        if !csrf_ok(parts, &presented) {
            return Err(ApiError::csrf());
        }
        if scopes.allows(N::SCOPE) {
            Ok(Authorized(PhantomData))
        } else {
            Err(ApiError::forbidden(N::SCOPE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_scopes_and_refuse_bad_entries() {
        let t =
            Tokens::parse("admin=s3cr3t-aa, read=viewer-123\npush+work=worker-7x\n# c\n").unwrap();
        assert_eq!(t.entries.len(), 3);
        let w = t.authenticate(b"worker-7x").unwrap();
        assert!(w.allows(Scope::Push) && w.allows(Scope::Work) && !w.allows(Scope::Read));
        assert!(t.authenticate(b"s3cr3t-aa").unwrap().allows(Scope::Read));
        assert!(matches!(
            Tokens::parse("admin"),
            Err(TokenError::Malformed(1))
        ));
        assert!(matches!(
            Tokens::parse("read=a1234567,root=b1234567"),
            Err(TokenError::UnknownScope(_))
        ));
        assert!(matches!(
            Tokens::parse("read="),
            Err(TokenError::EmptySecret(1))
        ));
        // the issue's own example
        let ex = Tokens::parse("admin=s3cr3t,read=viewer,push+work=worker-7").unwrap();
        assert!(ex.authenticate(b"viewer").unwrap().allows(Scope::Read));
        assert!(!ex.authenticate(b"viewer").unwrap().allows(Scope::Push));
        assert!(matches!(
            Tokens::parse("read=a1234567,admin=a1234567"),
            Err(TokenError::Duplicate(2))
        ));
        assert!(t.authenticate(b"").is_none());
        // prefixes and extensions of a secret are refused (digests, not prefixes, compared)
        assert!(t.authenticate(b"worker-7").is_none());
        assert!(t.authenticate(b"worker-7xx").is_none());
        assert!(t.authenticate(b"worker-7x\0").is_none());
    }

    #[test]
    fn no_secret_is_kept_in_memory_in_clear() {
        let t = Tokens::parse("admin=very-secret-admin-token").unwrap();
        for (_, stored, len) in &t.entries {
            assert_eq!(*len, "very-secret-admin-token".len());
            assert!(!stored.windows(4).any(|w| w == b"very"));
            assert_eq!(*stored, digest(b"very-secret-admin-token"));
        }
    }

    #[test]
    fn percent_decoding_of_query_tokens() {
        assert_eq!(percent_decode("a%2Bb+c"), "a+b c");
        assert_eq!(percent_decode("abc%"), "abc%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
