//! Settings resolved once from flags, the environment and defaults.
//!
//! Precedence: command-line flags, then environment, then the config file, then defaults.
//! This is the only module that reads the environment; the library receives resolved values.

/// Environment variable names, in one place.
pub(crate) mod env {
    /// A personal API access token (`tskey-api-…`), as Tailscale's Terraform provider names it.
    pub(crate) const TAILSCALE_API_KEY: &str = "TAILSCALE_API_KEY";
    /// An OAuth client's ID.
    pub(crate) const TAILSCALE_OAUTH_CLIENT_ID: &str = "TAILSCALE_OAUTH_CLIENT_ID";
    /// An OAuth client's secret (`tskey-client-…`).
    pub(crate) const TAILSCALE_OAUTH_CLIENT_SECRET: &str = "TAILSCALE_OAUTH_CLIENT_SECRET";
    /// The tailnet (`-` for the credential's own).
    pub(crate) const TAILSCALE_TAILNET: &str = "TAILSCALE_TAILNET";
    /// The API's base URL (default `https://api.tailscale.com`).
    pub(crate) const TAILSCALE_BASE_URL: &str = "TAILSCALE_BASE_URL";
    /// Where journals, locks and the audit log live.
    pub(crate) const TSROTATE_STATE_DIR: &str = "TSROTATE_STATE_DIR";
    /// A tracing filter overriding -v/-q.
    pub(crate) const TSROTATE_LOG: &str = "TSROTATE_LOG";
    /// Disables colour.
    pub(crate) const NO_COLOR: &str = "NO_COLOR";
    /// The XDG state directory.
    pub(crate) const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
    /// The user's home.
    pub(crate) const HOME: &str = "HOME";

    /// A variable's value, when set and not empty.
    #[allow(
        clippy::disallowed_methods,
        reason = "settings.rs is where the environment is read"
    )]
    pub(crate) fn var(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

use tsrotate::api::{self, Auth};
use tsrotate::key::{Credential, KeyKind, Secret};

use crate::exit::UserError;

/// How to reach the Tailscale API, from the environment.
#[derive(Clone)]
pub(crate) struct ApiSettings {
    pub(crate) base_url: String,
    pub(crate) tailnet: String,
    pub(crate) auth: Option<Auth>,
}

impl ApiSettings {
    /// Read `TAILSCALE_*` once. OAuth client credentials win over an API access token: they
    /// are scoped and do not belong to a person.
    pub(crate) fn from_env(scopes: &[&str]) -> Result<Self, UserError> {
        let base_url =
            env::var(env::TAILSCALE_BASE_URL).unwrap_or_else(|| api::DEFAULT_BASE_URL.to_owned());
        let tailnet = env::var(env::TAILSCALE_TAILNET).unwrap_or_else(|| "-".to_owned());
        let client_secret = env::var(env::TAILSCALE_OAUTH_CLIENT_SECRET).map(Secret::new);
        let auth = if let Some(client_secret) = client_secret {
            let parsed = Credential::parse(client_secret.expose_secret()).ok();
            if parsed
                .as_ref()
                .is_some_and(|c| c.kind() != &KeyKind::OAuthClientSecret)
            {
                return Err(UserError::new(format!(
                    "{} does not hold an OAuth client secret (`tskey-client-…`)",
                    env::TAILSCALE_OAUTH_CLIENT_SECRET
                )));
            }
            // The secret alone identifies the client; the ID is optional.
            let client_id = env::var(env::TAILSCALE_OAUTH_CLIENT_ID)
                .or_else(|| parsed.as_ref().map(|c| c.key_id().to_string()))
                .unwrap_or_default();
            Some(Auth::OAuthClient {
                client_id,
                client_secret,
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            })
        } else {
            env::var(env::TAILSCALE_API_KEY).map(|v| Auth::ApiAccessToken(Secret::new(v)))
        };
        Ok(Self {
            base_url,
            tailnet,
            auth,
        })
    }

    /// A client, or `None` when no credentials are configured.
    pub(crate) fn client(&self) -> anyhow::Result<Option<api::Client>> {
        let Some(auth) = self.auth.clone() else {
            return Ok(None);
        };
        let client = api::ClientBuilder::new(auth)
            .base_url(&self.base_url)
            .tailnet(&self.tailnet)
            .build()
            .map_err(|e| {
                UserError::new(e.to_string()).hint(format!("check {}", env::TAILSCALE_BASE_URL))
            })?;
        Ok(Some(client))
    }

    /// A client, or a usage error saying how to configure credentials.
    pub(crate) fn require_client(&self) -> anyhow::Result<api::Client> {
        self.client()?.ok_or_else(|| {
            UserError::new("no Tailscale API credentials")
                .hint(format!(
                    "set {} and {} (an OAuth client, recommended) or {} (a personal API access token)",
                    env::TAILSCALE_OAUTH_CLIENT_ID,
                    env::TAILSCALE_OAUTH_CLIENT_SECRET,
                    env::TAILSCALE_API_KEY
                ))
                .into()
        })
    }
}
