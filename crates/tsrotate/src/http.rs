//! HTTP rules shared by everything in this crate that carries a credential to a server: the
//! Tailscale API client (`crate::api`) and the sinks that talk to a service (`crate::sink`'s
//! `http` module, for Vault/`OpenBao`, AWS, GitHub and Kubernetes).
//!
//! Each of those sends a credential to somebody's server, so each must keep the same rules:
//! never follow a redirect (the credential goes to the configured host only), time every
//! request out, send plain `http://` only to a loopback address, and keep secrets out of
//! error messages. The pieces of those rules that are the same everywhere live here, once,
//! so that the API client and the sinks cannot drift apart on them. How each words its
//! errors stays with it.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

/// How long one HTTP request may take, unless the caller sets its own (the API client's
/// timeout is configurable; the sinks use this).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest that connecting may take, within the request's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client builder with the rules every client starts from: no redirects (credentials go
/// to the configured host only), `timeout` on every request, connecting within the shorter
/// of `timeout` and [`CONNECT_TIMEOUT`], our user agent.
pub(crate) fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tsrotate/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout.min(CONNECT_TIMEOUT))
}

/// [`client_builder`], built; the error says what failed, for the caller to wrap.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    client_builder(timeout)
        .build()
        .map_err(|e| format!("could not build the HTTP client: {e}"))
}

/// Whether the URL's host is a loopback address or `localhost`: the only hosts plain
/// `http://` may go to, since a credential sent there never crosses the network.
///
/// The last case, a domain that reads as an IP address, cannot arise for `http` URLs (the URL
/// parser turns such hosts into addresses); it is kept for URLs of other schemes, which
/// `crate::api::is_loopback_base_url` may be given.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Parse the address of a server a credential is sent to (the Tailscale API, Vault, AWS,
/// GitHub, a Kubernetes API server): `https://`, or `http://` to a loopback host
/// ([`check_scheme`]); no credentials inside it (they are configured separately), no query or
/// fragment, a host. `what` names the address in messages ("the Vault address").
///
/// The one parser for such addresses, so that the API client and every sink refuse the same.
pub(crate) fn parse_service_url(raw: &str, what: &str) -> Result<Url, String> {
    // The text is not echoed: a malformed address may still hold a credential.
    let url = Url::parse(raw).map_err(|e| format!("{what} is not a valid URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{what} must not contain credentials; they are configured separately"
        ));
    }
    check_scheme(&url, what)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{what} must not have a query or fragment"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{what} has no host"));
    }
    Ok(url)
}

/// The scheme rule: `https://`, or plain `http://` only to a loopback address
/// ([`is_loopback`]). `what` names the URL in messages.
pub(crate) fn check_scheme(url: &Url, what: &str) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(plain_http_refused(url, "credentials")),
        other => Err(format!("unsupported URL scheme `{other}` in {what}")),
    }
}

/// Why a plain `http://` URL to a host that is not a loopback address is refused. `what`
/// names what would be exposed ("credentials", "the token").
pub(crate) fn plain_http_refused(url: &Url, what: &str) -> String {
    format!(
        "refusing plain http:// to {}: {what} would cross the network unencrypted; use https:// (plain http is allowed only for loopback addresses)",
        url.host_str().unwrap_or("")
    )
}

/// Percent-encode one path segment: RFC 3986 unreserved characters pass, all else is
/// escaped. AWS signs requests over exactly this encoding.
pub(crate) fn encode_segment(s: &str) -> String {
    encode_segment_keeping(s, b"")
}

/// Percent-encode one path segment: RFC 3986 unreserved characters and the bytes in `keep`
/// pass, all else is escaped. For a caller that has always sent some other characters that
/// a path segment allows (RFC 3986 `pchar`) as they are.
pub(crate) fn encode_segment_keeping(s: &str, keep: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A URL as an error may show it: scheme, host, port and path, never a query (which may
/// hold a credential) or a fragment.
pub(crate) fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// What is wrong with a JSON answer, without serde's own message: it can quote the
/// offending value, which may be a secret. Only the kind of problem and where.
pub(crate) fn json_problem(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected field type or value",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// Plain `http://` URLs that [`is_loopback`] accepts, for every test of a rule built on it.
#[cfg(test)]
pub(crate) const LOOPBACK_HTTP_URLS: &[&str] = &[
    "http://127.0.0.1:8200",
    "http://127.1",
    "http://0x7f.0.0.1",
    "http://localhost/",
    "http://LOCALHOST",
    "http://[::1]:9",
];

/// Plain `http://` URLs that [`is_loopback`] refuses, however much they look like one.
#[cfg(test)]
pub(crate) const NON_LOOPBACK_HTTP_URLS: &[&str] = &[
    "http://10.0.0.1",
    "http://localhost.example",
    "http://[::2]",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        // A domain that reads as an address only stays one for schemes the URL parser does
        // not know.
        for yes in LOOPBACK_HTTP_URLS.iter().chain(&["foo://127.0.0.1/"]) {
            assert!(is_loopback(&Url::parse(yes).expect(yes)), "{yes}");
        }
        for no in NON_LOOPBACK_HTTP_URLS
            .iter()
            .chain(&["mailto:someone@localhost"])
        {
            assert!(!is_loopback(&Url::parse(no).expect(no)), "{no}");
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(encode_segment("a/b c@d"), "a%2Fb%20c%40d");
        assert_eq!(encode_segment_keeping("a/b c@d", b"@"), "a%2Fb%20c@d");
    }

    #[test]
    fn shown_urls_have_no_query_or_fragment() {
        let url = Url::parse("https://h:8443/p/q?token=secret#frag").expect("url");
        assert_eq!(shown_url(&url), "https://h:8443/p/q");
    }
}
