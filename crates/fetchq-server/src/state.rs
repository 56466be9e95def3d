//! What every handler shares.

use std::sync::Arc;

use fetchq_core::Client;

use crate::auth::Tokens;

/// The router's state: the engine client and the tokens.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub client: Client,
    /// The configured tokens.
    pub tokens: Arc<Tokens>,
}
