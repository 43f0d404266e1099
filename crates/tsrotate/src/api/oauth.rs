//! The OAuth access token cache: one exchange per hour, not one per call.
//!
//! A token is renewed before its end by two clocks, whichever says so first: the local
//! monotonic clock, and the control plane's (the `Date` of its answers), so that a suspended
//! laptop or a moved server clock does not send a token the API already counts as expired.

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
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
    current: Mutex<Option<Cached>>,
}

struct Cached {
    token: Secret,
    /// When to renew, by the local monotonic clock.
    refresh_at: Instant,
    /// When to renew, by the control plane's clock.
    refresh_at_server: OffsetDateTime,
}

impl TokenCache {
    /// The cached token, or a fresh one from `exchange` when none is cached or it is close to
    /// its end. Holding the lock across the exchange means concurrent callers wait for one
    /// exchange instead of each making their own.
    ///
    /// `server_now` is the control plane's time as last seen.
    pub(super) async fn get_or_refresh<N, F, Fut>(
        &self,
        server_now: N,
        exchange: F,
    ) -> Result<Secret, Error>
    where
        N: Fn() -> OffsetDateTime,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<TokenResponse, Error>>,
    {
        let mut current = self.current.lock().await;
        if let Some(cached) = current.as_ref()
            && Instant::now() < cached.refresh_at
            && server_now() < cached.refresh_at_server
        {
            return Ok(cached.token.clone());
        }
        let response = exchange().await?;
        let lifetime = response
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        // Short-lived tokens refresh at 90% of their life rather than never being reused.
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        let usable = lifetime.saturating_sub(margin);
        // The exchange's own answer set the server time: the token was issued about then.
        *current = Some(Cached {
            token: response.access_token.clone(),
            refresh_at: Instant::now() + usable,
            refresh_at_server: server_now() + usable,
        });
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
