//! AWS Signature Version 4, by hand
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>): see the
//! parent module for why not the SDK. Checked against AWS's published test vectors below.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::http::encode_segment;
use crate::key::Secret;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// A request as `SigV4` sees it.
pub(super) struct SigningRequest<'a> {
    pub(super) method: &'a str,
    /// The path as sent, already percent-encoded.
    pub(super) path: &'a str,
    /// Header names in lower case, with their values; any order.
    pub(super) headers: &'a [(&'a str, &'a str)],
    pub(super) payload: &'a [u8],
}

/// What signing produced; the intermediate strings are kept for tests.
pub(super) struct Signed {
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "checked against the test suite")
    )]
    canonical_request: String,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "checked against the test suite")
    )]
    string_to_sign: String,
    pub(super) authorization: String,
}

/// Sign `request` for `service` in `region` at `amz_date` (`20150830T123600Z`).
pub(super) fn sign(
    request: &SigningRequest<'_>,
    access_key_id: &str,
    secret_access_key: &Secret,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Signed {
    // Every service but S3 encodes the already-encoded path once more.
    let canonical_uri = if request.path.is_empty() {
        "/".to_owned()
    } else {
        request
            .path
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut canonical_request = format!("{}\n{canonical_uri}\n\n", request.method);
    for (name, value) in &headers {
        let _ = writeln!(canonical_request, "{name}:{value}");
    }
    let _ = write!(
        canonical_request,
        "\n{signed_headers}\n{}",
        hex(&Sha256::digest(request.payload))
    );
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = {
        let seed = Zeroizing::new(format!("AWS4{}", secret_access_key.expose_secret()));
        let k_date = Zeroizing::new(hmac_sha256(seed.as_bytes(), date.as_bytes()));
        let k_region = Zeroizing::new(hmac_sha256(k_date.as_slice(), region.as_bytes()));
        let k_service = Zeroizing::new(hmac_sha256(k_region.as_slice(), service.as_bytes()));
        Zeroizing::new(hmac_sha256(k_service.as_slice(), b"aws4_request"))
    };
    let signature = hex(&hmac_sha256(key.as_slice(), string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    );
    Signed {
        canonical_request,
        string_to_sign,
        authorization,
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
pub(super) fn amz_date(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example credentials of AWS's Signature Version 4 test suite.
    const SUITE_KEY_ID: &str = "AKIDEXAMPLE";
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn suite_sign(method: &str) -> Signed {
        sign(
            &SigningRequest {
                method,
                path: "/",
                headers: &[
                    ("Host", "example.amazonaws.com"),
                    ("X-Amz-Date", "20150830T123600Z"),
                ],
                payload: b"",
            },
            SUITE_KEY_ID,
            &Secret::new(SUITE_SECRET.into()),
            "us-east-1",
            "service",
            "20150830T123600Z",
        )
    }

    /// The `get-vanilla` case of AWS's `SigV4` test suite (`get-vanilla.creq`, `.sts`,
    /// `.authz`), as published with the suite's example credentials.
    #[test]
    fn signs_the_suite_get_vanilla_case() {
        let signed = suite_sign("GET");
        assert_eq!(
            signed.canonical_request,
            format!(
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA256}"
            )
        );
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// The suite's `post-vanilla` case: the same request as a POST.
    #[test]
    fn signs_the_suite_post_vanilla_case() {
        let signed = suite_sign("POST");
        assert!(
            signed.authorization.ends_with(
                "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            ),
            "{}",
            signed.authorization
        );
    }

    #[test]
    fn header_values_are_trimmed_and_sorted_by_name() {
        let signed = sign(
            &SigningRequest {
                method: "POST",
                path: "/",
                headers: &[
                    ("X-Amz-Target", "  AmazonSSM.GetParameter "),
                    ("content-type", "application/x-amz-json-1.1"),
                    ("host", "ssm.us-east-1.amazonaws.com"),
                    ("x-amz-date", "20240101T000000Z"),
                ],
                payload: b"{}",
            },
            SUITE_KEY_ID,
            &Secret::new(SUITE_SECRET.into()),
            "us-east-1",
            "ssm",
            "20240101T000000Z",
        );
        assert!(signed.canonical_request.contains(
            "content-type:application/x-amz-json-1.1\nhost:ssm.us-east-1.amazonaws.com\nx-amz-date:20240101T000000Z\nx-amz-target:AmazonSSM.GetParameter\n\ncontent-type;host;x-amz-date;x-amz-target\n"
        ));
        assert!(
            signed
                .authorization
                .contains("/20240101/us-east-1/ssm/aws4_request")
        );
        assert!(!signed.authorization.contains(SUITE_SECRET));
    }

    #[test]
    fn amz_dates_are_utc() {
        let at = time::macros::datetime!(2015-08-30 14:36:00 +02:00);
        assert_eq!(amz_date(at), "20150830T123600Z");
    }
}
