//! Server settings.

use std::time::Duration;

use crate::auth::Tokens;

/// How the server behaves: limits and tokens.
///
/// ```
/// let config = fetchq_server::Config::default();
/// assert_eq!(config.body_limit, 16 * 1024 * 1024);
/// assert_eq!(config.request_timeout.as_secs(), 30);
/// assert!(!config.metrics_public);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest request body accepted, in bytes (default 16 MiB); larger ones get 413.
    pub body_limit: usize,
    /// Longest a request may run (default 30 s); longer ones get 503 `timeout`.
    pub request_timeout: Duration,
    /// The accepted tokens.
    pub tokens: Tokens,
    /// `GET /metrics` answers without a token (default false: it needs a
    /// `read` token). For a Prometheus that cannot send one.
    pub metrics_public: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            body_limit: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            tokens: Tokens::default(),
            metrics_public: false,
        }
    }
}
