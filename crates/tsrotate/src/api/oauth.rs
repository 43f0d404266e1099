//! The OAuth access token cache: one exchange per hour, not one per call.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Error, wire::TokenResponse};
use crate::key::Secret;

/// Refresh this long before the token's end, so a call never starts with a token that dies
/// mid-flight. Tailscale's tokens last an hour (kb/1215 advises renewing "shortly before").
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The lifetime assumed when the token endpoint does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub(super) struct TokenCache {
    current: Mutex<Option<(Secret, Instant)>>,
}

impl TokenCache {
    /// The cached token, or a fresh one from `exchange` when none is cached or it is close to
    /// its end. Holding the lock across the exchange means concurrent callers wait for one
    /// exchange instead of each making their own.
    pub(super) async fn get_or_refresh<F, Fut>(&self, exchange: F) -> Result<Secret, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<TokenResponse, Error>>,
    {
        let mut current = self.current.lock().await;
        if let Some((token, refresh_at)) = current.as_ref()
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let response = exchange().await?;
        let lifetime = response
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        // Short-lived tokens refresh at 90% of their life rather than never being reused.
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        let refresh_at = Instant::now() + lifetime.saturating_sub(margin);
        *current = Some((response.access_token.clone(), refresh_at));
        tracing::debug!(
            lifetime_s = lifetime.as_secs(),
            "obtained an OAuth access token"
        );
        Ok(response.access_token)
    }

    /// Forget the cached token, after the API rejected it.
    pub(super) async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}
