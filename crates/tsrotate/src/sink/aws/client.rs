//! One AWS JSON 1.1 call (`X-Amz-Target`): sign it ([`super::sigv4`]), send it to the one
//! configured endpoint, and turn a failure into a [`crate::sink::Error`] of the right kind
//! with the service's message scrubbed of everything the request carried.

use reqwest::header::HeaderName;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use zeroize::Zeroizing;

use super::AwsCredentials;
use super::sigv4::{SigningRequest, amz_date, sign};
use crate::http::json_problem;
use crate::sink::Error;
use crate::sink::http::{http_client, parse_endpoint, scrub, sensitive_header, transport_error};

/// One service endpoint with credentials: signs and sends `X-Amz-Target` calls.
pub(super) struct Client {
    http: reqwest::Client,
    pub(super) url: Url,
    /// `host[:port]`, exactly as signed and sent.
    host: String,
    region: String,
    /// The signing name, also the endpoint prefix: `secretsmanager`, `ssm`.
    service: &'static str,
    /// The `X-Amz-Target` prefix: `secretsmanager`, `AmazonSSM`.
    target_prefix: &'static str,
    credentials: AwsCredentials,
    /// How long one request may take.
    pub(super) timeout: std::time::Duration,
}

/// How a call failed.
pub(super) enum Failure {
    /// The service answered with an error.
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// No usable answer; already classified.
    Sink(Error),
}

impl Client {
    pub(super) fn new(
        sink: &str,
        service: &'static str,
        target_prefix: &'static str,
        region: &str,
        endpoint_url: Option<String>,
        credentials: AwsCredentials,
    ) -> Result<Self, Error> {
        let config = |message: String| Error::config(sink, message);
        let region_ok = !region.is_empty()
            && region.len() <= 50
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !region.starts_with('-')
            && !region.ends_with('-');
        if !region_ok {
            return Err(config(format!(
                "invalid AWS region `{region}`: expected a name such as `us-east-1`"
            )));
        }
        let endpoint = match endpoint_url {
            Some(url) => url,
            None if region.starts_with("cn-") => {
                format!("https://{service}.{region}.amazonaws.com.cn")
            }
            None => format!("https://{service}.{region}.amazonaws.com"),
        };
        let url = parse_endpoint(&endpoint, "the AWS endpoint URL").map_err(config)?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(config("the AWS endpoint URL has no host".into())),
        };
        let key_id_ok = !credentials.access_key_id.is_empty()
            && credentials
                .access_key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric());
        if !key_id_ok {
            return Err(config(
                "the AWS access key ID is empty or not made of letters and digits".into(),
            ));
        }
        if credentials.secret_access_key.expose_secret().is_empty() {
            return Err(config("the AWS secret access key is empty".into()));
        }
        if let Some(token) = &credentials.session_token
            && (token.expose_secret().is_empty()
                || sensitive_header(token.expose_secret()).is_none())
        {
            return Err(config(
                "the AWS session token is empty or has characters that cannot be sent in a header"
                    .into(),
            ));
        }
        let http = http_client().map_err(config)?;
        Ok(Self {
            http,
            url,
            host,
            region: region.to_owned(),
            service,
            target_prefix,
            credentials,
            timeout: crate::http::REQUEST_TIMEOUT,
        })
    }

    /// Call `action` with `body`. `sent` lists the secret strings in the body, so that a
    /// service message quoting them is scrubbed.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        sink: &str,
        action: &str,
        body: &Value,
        sent: &[&str],
    ) -> Result<T, Failure> {
        let payload = Zeroizing::new(serde_json::to_vec(body).expect("JSON values serialize"));
        let target = format!("{}.{action}", self.target_prefix);
        let amz_date = amz_date(time::OffsetDateTime::now_utc());
        let content_type = "application/x-amz-json-1.1";
        let mut headers = vec![
            ("content-type", content_type),
            ("host", self.host.as_str()),
            ("x-amz-date", amz_date.as_str()),
            ("x-amz-target", target.as_str()),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token", token.expose_secret()));
        }
        let signed = sign(
            &SigningRequest {
                method: "POST",
                path: self.url.path(),
                headers: &headers,
                payload: &payload,
            },
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
            &self.region,
            self.service,
            &amz_date,
        );
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::HOST, self.host.as_str())
            .header(HeaderName::from_static("x-amz-date"), amz_date.as_str())
            .header(HeaderName::from_static("x-amz-target"), target.as_str())
            .header(
                reqwest::header::AUTHORIZATION,
                sensitive_header(&signed.authorization).expect("the signature is ASCII"),
            );
        if let Some(token) = &self.credentials.session_token {
            request = request.header(
                HeaderName::from_static("x-amz-security-token"),
                sensitive_header(token.expose_secret()).expect("checked in Client::new"),
            );
        }
        let response = request
            .body(payload.to_vec())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| Failure::Sink(transport_error(sink, &self.url, &e)))?;
        drop(payload);
        let status = response.status();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Sink(transport_error(sink, &self.url, &e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Sink(Error::other(
                    sink,
                    format!("unexpected answer to {action}: {}", json_problem(&e)),
                ))
            });
        }
        if status.is_redirection() {
            return Err(Failure::Sink(Error::config(
                sink,
                format!(
                    "HTTP {} from {action}: the endpoint redirected; redirects are not followed so that signed requests go nowhere else",
                    status.as_u16()
                ),
            )));
        }
        let (code, message) = parse_error(status, error_type.as_deref(), &bytes);
        let mut known = sent.to_vec();
        known.push(self.credentials.secret_access_key.expose_secret());
        if let Some(token) = &self.credentials.session_token {
            known.push(token.expose_secret());
        }
        Err(Failure::Service {
            status: status.as_u16(),
            code,
            message: scrub(&message, &known),
        })
    }
}

/// The error code and message of an AWS error answer: a JSON body (`__type`, `message` or
/// `Message`), an XML one (`<Code>`, `<Message>`, as moto's authentication errors are), or
/// the `X-Amzn-ErrorType` header.
fn parse_error(status: StatusCode, error_type: Option<&str>, body: &[u8]) -> (String, String) {
    #[derive(Deserialize)]
    struct JsonError {
        #[serde(rename = "__type", default)]
        kind: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(rename = "Message", default)]
        message_upper: Option<String>,
    }
    let text = String::from_utf8_lossy(body);
    let (code, message) = if let Ok(e) = serde_json::from_slice::<JsonError>(body) {
        (e.kind, e.message.or(e.message_upper))
    } else {
        (
            between(&text, "<Code>", "</Code>"),
            between(&text, "<Message>", "</Message>"),
        )
    };
    let code = code
        .or_else(|| error_type.map(str::to_owned))
        .map(|c| normalize_code(&c))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    (code, message.unwrap_or_default().trim().to_owned())
}

/// `com.amazonaws.secretsmanager#ResourceNotFoundException` and
/// `ResourceNotFoundException:http://internal.amazon.com/…` both mean
/// `ResourceNotFoundException`.
fn normalize_code(code: &str) -> String {
    let code = code.rsplit('#').next().unwrap_or(code);
    code.split(':').next().unwrap_or(code).trim().to_owned()
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(text[start..end].to_owned())
}

/// Error codes that mean our credentials were refused or lack a permission.
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthFailure",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "KMSAccessDeniedException",
    "MissingAuthenticationToken",
    "NotAuthorized",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
];

/// Error codes after which trying again later may work.
const RETRYABLE_CODES: &[&str] = &[
    "InternalFailure",
    "InternalServerError",
    "InternalServiceError",
    "InternalServiceErrorException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "TooManyUpdates",
];

/// The general mapping of a failure to a sink error; operations handle their own codes first.
pub(super) fn classify(sink: &str, action: &str, failure: Failure) -> Error {
    let (status, code, message) = match failure {
        Failure::Sink(error) => return error,
        Failure::Service {
            status,
            code,
            message,
        } => (status, code, message),
    };
    let shown = if message.is_empty() {
        format!("{action}: {code}")
    } else {
        format!("{action}: {code}: {message}")
    };
    if DENIED_CODES.contains(&code.as_str()) || matches!(status, 401 | 403) {
        Error::denied(sink, shown)
    } else if RETRYABLE_CODES.contains(&code.as_str()) || status == 429 || status >= 500 {
        Error::unavailable(sink, shown)
    } else {
        Error::other(sink, shown)
    }
}

pub(super) fn is_code(failure: &Failure, wanted: &str) -> bool {
    matches!(failure, Failure::Service { code, .. } if code == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ErrorKind;
    use crate::sink::aws::test_credentials;

    #[test]
    fn error_bodies_in_json_xml_or_header_only() {
        let (code, message) = parse_error(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","Message":"gone"}"#,
        );
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("ResourceNotFoundException", "gone")
        );
        let (code, message) = parse_error(
            StatusCode::FORBIDDEN,
            None,
            b"<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error></ErrorResponse>",
        );
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("SignatureDoesNotMatch", "no")
        );
        let (code, _) = parse_error(
            StatusCode::BAD_REQUEST,
            Some("ThrottlingException:http://internal.amazon.com/coral/"),
            b"",
        );
        assert_eq!(code, "ThrottlingException");
        let (code, _) = parse_error(StatusCode::BAD_GATEWAY, None, b"<html>");
        assert_eq!(code, "HTTP 502");
    }

    #[test]
    fn failures_are_classified() {
        let failure = |status, code: &str| Failure::Service {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(matches!(
            classify("s", "A", failure(400, "UnrecognizedClientException")),
            Error {
                kind: ErrorKind::Denied,
                ..
            }
        ));
        assert!(matches!(
            classify("s", "A", failure(403, "Whatever")),
            Error {
                kind: ErrorKind::Denied,
                ..
            }
        ));
        assert!(matches!(
            classify("s", "A", failure(400, "ThrottlingException")),
            Error {
                kind: ErrorKind::Unavailable,
                ..
            }
        ));
        assert!(matches!(
            classify("s", "A", failure(503, "Whatever")),
            Error {
                kind: ErrorKind::Unavailable,
                ..
            }
        ));
        assert!(matches!(
            classify("s", "A", failure(400, "ValidationException")),
            Error {
                kind: ErrorKind::Other,
                ..
            }
        ));
    }

    #[test]
    fn default_endpoints_follow_the_partition() {
        let client = |service, region, endpoint| {
            Client::new("s", service, "T", region, endpoint, test_credentials()).unwrap()
        };
        let ssm = client("ssm", "eu-west-1", None);
        assert_eq!(ssm.url.as_str(), "https://ssm.eu-west-1.amazonaws.com/");
        assert_eq!(ssm.host, "ssm.eu-west-1.amazonaws.com");
        let sm = client("secretsmanager", "cn-north-1", None);
        assert_eq!(
            sm.url.as_str(),
            "https://secretsmanager.cn-north-1.amazonaws.com.cn/"
        );
        let local = client("ssm", "us-east-1", Some("http://127.0.0.1:5000".into()));
        assert_eq!(local.host, "127.0.0.1:5000");
    }
}
