//! Posting a summary to an incoming webhook (Slack, Teams, Mattermost, Discord-compatible).
//!
//! The body is `{"text": "<summary>", "tsrotate": {...}}`: every common incoming-webhook
//! receiver renders `text` and ignores the rest, and machines can read the structured part.
//!
//! # Security
//!
//! An incoming-webhook URL is a credential (anyone holding it can post). It is a [`Secret`]
//! here, never shown: errors name only the scheme and host. Redirects are not followed, and
//! plain `http://` is allowed only to loopback addresses.

use std::time::Duration;

use serde::Serialize;

use crate::key::Secret;

/// Why a notification could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not usable.
    #[error("the notification URL is not usable: {0}")]
    Url(String),
    /// The receiver could not be reached or refused the message.
    #[error("posting the notification to {host} failed: {message}")]
    Delivery {
        /// Scheme and host only.
        host: String,
        /// What happened.
        message: String,
    },
}

/// Post `payload` (with its human summary `text`) to the webhook at `url`.
pub async fn post<T: Serialize + Sync>(url: &Secret, text: &str, payload: &T) -> Result<(), Error> {
    let parsed =
        reqwest::Url::parse(url.expose_secret()).map_err(|_| Error::Url("not a URL".into()))?;
    let host = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
    let loopback = matches!(
        parsed.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => return Err(Error::Url(format!("scheme `{other}` (use https)"))),
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("tsrotate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Url(e.to_string()))?;
    let body = serde_json::json!({ "text": text, "tsrotate": payload });
    let response = client
        .post(parsed)
        .json(&body)
        .send()
        .await
        .map_err(|e| Error::Delivery {
            host: host.clone(),
            message: e.without_url().to_string(),
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(Error::Delivery {
            host,
            message: format!("status {}", response.status()),
        })
    }
}
