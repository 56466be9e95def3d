//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use fetchq_core::Client;

use crate::auth::Tokens;

/// The router's state: the engine client and the tokens.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub client: Client,
    /// The configured tokens.
    pub tokens: Arc<Tokens>,
    /// How long one bulk call works before it answers with where to go on
    /// (half the request timeout).
    pub bulk_budget: Duration,
    /// `GET /metrics` answers without a token.
    pub metrics_public: bool,
    /// The console's recent counter readings (its throughput column).
    pub(crate) samples: Arc<crate::console::Samples>,
}
