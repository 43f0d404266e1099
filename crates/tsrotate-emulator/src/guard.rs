//! Who may talk to the emulator: the outermost layer, before faults and the request log.
//!
//! The emulator's admin routes (`/_emulator/…`) have no authentication and its bootstrap
//! credentials have full access, so it must not be driven by anything but the person who
//! started it. Three rules, each against a concrete attack:
//!
//! - **Loopback only by default.** [`Exposure::Loopback`] (what `tsrotate emulator` uses unless
//!   told otherwise) serves nobody else on the network; the CLI refuses a non-loopback
//!   `--listen` address without `--allow-remote`.
//! - **`Host` must name the loopback.** A web page can make a browser send requests to
//!   `127.0.0.1` under its own domain name (DNS rebinding) and then read the answers. A request
//!   whose `Host` header is not `localhost`, `127.x.x.x` or `[::1]` (any port) is refused
//!   with 421 before anything happens. A request without `Host` (in-process `oneshot` tests,
//!   HTTP/1.0 tools) is allowed: browsers always send one.
//! - **Admin changes are JSON, and with [`Exposure::Network`] carry the admin token.** A page
//!   can `POST` a `text/plain` or form body to any address without a CORS preflight; it cannot
//!   send `Content-Type: application/json` without one, which the emulator never grants. So a
//!   `POST` to an admin route (even with an empty body) needs `Content-Type: application/json`
//!   (else 415). When the emulator serves the network, every admin route also needs
//!   `Authorization: Bearer <admin token>` (else 401), the token being random per start and
//!   printed only in the ready line.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, secret, state::EmulatorState};

/// Who the emulator serves. Chosen at start in [`crate::Options::exposure`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Exposure {
    /// Only this machine: `Host` must name the loopback; admin routes need no token.
    #[default]
    Loopback,
    /// The network (the person asked for it): any `Host`; admin routes need the admin token
    /// from [`crate::Bootstrap::admin_token`].
    Network,
}

/// A random admin token for [`Exposure::Network`], 32 alphanumeric characters.
pub(crate) fn new_admin_token() -> String {
    format!("tsemu-admin-{}", secret::random_alphanumeric(32))
}

/// The layer: refuses what the rules above forbid, before the request reaches faults, the log
/// or a route.
pub(crate) async fn check(
    State(state): State<EmulatorState>,
    request: Request,
    next: Next,
) -> Response {
    match admit(
        &state,
        request.method(),
        request.uri().path(),
        request.headers(),
    ) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

fn admit(
    state: &EmulatorState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let admin_token = state.admin_token();
    if let (None, Some(host)) = (admin_token, headers.get(header::HOST))
        && !is_loopback_host(host.to_str().unwrap_or_default())
    {
        return Err(ApiError::Status(
            StatusCode::MISDIRECTED_REQUEST,
            "this emulator serves only requests addressed to the loopback \
             (Host: localhost, 127.0.0.1 or [::1])"
                .to_owned(),
        ));
    }
    if !path.starts_with("/_emulator/") {
        return Ok(());
    }
    if let Some(expected) = admin_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !secret::matches_hash(given, &secret::sha256_hex(expected)) {
            return Err(ApiError::Status(
                StatusCode::UNAUTHORIZED,
                "admin routes need Authorization: Bearer <admin_token from the ready line>"
                    .to_owned(),
            ));
        }
    }
    if method == Method::POST && !is_json(headers) {
        return Err(ApiError::Status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "admin requests need Content-Type: application/json".to_owned(),
        ));
    }
    Ok(())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || is_port(after) => inside,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn is_port(colon_port: &str) -> bool {
    colon_port
        .strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_names_pass_the_host_check() {
        for ok in [
            "localhost",
            "LOCALHOST:8088",
            "127.0.0.1",
            "127.0.0.1:41234",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:8088",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:8088",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "0.0.0.0:8088",
            "10.0.0.1",
            "[::1]x",
            "[::2]:80",
            "127.0.0.1:80:80",
            "localhost:",
            "localhost:http",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
