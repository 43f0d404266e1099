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

use crate::http;
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

/// How long posting a notification may take: a receiver that does not answer must not hold
/// up the run that reports to it.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Post `payload` (with its human summary `text`) to the webhook at `url`.
///
/// The client follows the crate's HTTP rules, as the API client and the sinks do: no
/// redirects, a timeout, plain `http://` only to a loopback address. The URL itself is not
/// checked further (a webhook may carry its credential in the path or the query).
pub async fn post<T: Serialize + Sync>(url: &Secret, text: &str, payload: &T) -> Result<(), Error> {
    let parsed =
        reqwest::Url::parse(url.expose_secret()).map_err(|_| Error::Url("not a URL".into()))?;
    let host = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
    http::check_scheme(&parsed, "the notification URL").map_err(Error::Url)?;
    let client = http::client(TIMEOUT).map_err(Error::Url)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The webhook URL is a credential: plain http is refused for every host that is not a
    /// loopback address, before anything is sent.
    #[tokio::test]
    async fn plain_http_only_to_loopback() {
        for bad in http::NON_LOOPBACK_HTTP_URLS {
            let err = post(&Secret::new((*bad).to_owned()), "t", &())
                .await
                .expect_err(bad);
            assert!(matches!(err, Error::Url(_)), "{bad}: {err}");
        }
    }
}
