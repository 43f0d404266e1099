//! Input rules Tailscale applies to key and webhook fields, as 400s.

use crate::{error::ApiError, scope, state::MAX_EXPIRY_SECONDS, wire};

/// Longest `description` Tailscale accepts.
pub(crate) const MAX_DESCRIPTION_LEN: usize = 50;

/// "A maximum of 50 alphanumeric characters. Hyphens and spaces are also allowed." (spec)
pub(crate) fn description(value: Option<String>) -> Result<String, ApiError> {
    let value = value.unwrap_or_default();
    if value.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::bad_request(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} characters"
        )));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ')
    {
        return Err(ApiError::bad_request(
            "description may contain only alphanumeric characters, hyphens and spaces",
        ));
    }
    Ok(value)
}

/// `expirySeconds` for an auth key: omitted or `0` means the 90-day default (Go clients send
/// `0` for "unset"), more than 90 days or negative is a 400.
pub(crate) fn auth_key_expiry(value: Option<&serde_json::Number>) -> Result<i64, ApiError> {
    let Some(number) = value else {
        return Ok(MAX_EXPIRY_SECONDS);
    };
    let seconds = wire::integral(number)
        .ok_or_else(|| ApiError::bad_request("expirySeconds must be a whole number of seconds"))?;
    match seconds {
        0 => Ok(MAX_EXPIRY_SECONDS),
        s if s < 0 => Err(ApiError::bad_request("expirySeconds must not be negative")),
        s if s > MAX_EXPIRY_SECONDS => Err(ApiError::bad_request(format!(
            "expirySeconds must be at most {MAX_EXPIRY_SECONDS} (90 days)"
        ))),
        s => Ok(s),
    }
}

/// Tags look like `tag:name`, with a name of alphanumerics, `-` and `_`.
pub(crate) fn tags(values: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let values = values.unwrap_or_default();
    let bad: Vec<String> = values
        .iter()
        .filter(|tag| {
            !tag.strip_prefix("tag:").is_some_and(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        })
        .cloned()
        .collect();
    if bad.is_empty() {
        let mut unique = Vec::with_capacity(values.len());
        for tag in values {
            if !unique.contains(&tag) {
                unique.push(tag);
            }
        }
        Ok(unique)
    } else {
        Err(ApiError::tags_not_permitted(&bad))
    }
}

/// Scopes and tags of an OAuth client or federated identity: at least one known scope, and
/// tags whenever a scope can mint auth keys or manage devices.
pub(crate) fn trust_credential(
    scopes: Option<Vec<String>>,
    tags: Option<Vec<String>>,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let scopes = scopes.unwrap_or_default();
    if scopes.is_empty() {
        return Err(ApiError::bad_request("at least one scope is required"));
    }
    if let Some(unknown) = scopes.iter().find(|s| !scope::is_known(s)) {
        return Err(ApiError::bad_request(format!(
            "invalid scope \"{unknown}\""
        )));
    }
    let tags = self::tags(tags)?;
    if tags.is_empty() && scope::requires_tags(&scopes) {
        return Err(ApiError::bad_request(
            "tags are required when scopes include auth_keys, devices:core, devices or all",
        ));
    }
    let mut unique = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    Ok((unique, tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_limited_to_50_alphanumerics_hyphens_and_spaces() {
        assert_eq!(description(None).ok().as_deref(), Some(""));
        assert!(description(Some("rot-ci-20260101 key".into())).is_ok());
        assert!(description(Some("a".repeat(50))).is_ok());
        assert!(description(Some("a".repeat(51))).is_err());
        assert!(description(Some("under_score".into())).is_err());
        assert!(description(Some("dot.".into())).is_err());
    }

    #[test]
    fn expiry_defaults_to_90_days_and_is_capped_there() {
        let n = |v: i64| serde_json::Number::from(v);
        assert_eq!(auth_key_expiry(None).ok(), Some(7_776_000));
        assert_eq!(auth_key_expiry(Some(&n(0))).ok(), Some(7_776_000));
        assert_eq!(auth_key_expiry(Some(&n(3600))).ok(), Some(3600));
        assert_eq!(auth_key_expiry(Some(&n(7_776_000))).ok(), Some(7_776_000));
        assert!(auth_key_expiry(Some(&n(7_776_001))).is_err());
        assert!(auth_key_expiry(Some(&n(-1))).is_err());
    }

    #[test]
    fn tags_need_the_tag_prefix() {
        assert!(tags(Some(vec!["tag:ci".into(), "tag:a-b_c".into()])).is_ok());
        assert!(tags(Some(vec!["ci".into()])).is_err());
        assert!(tags(Some(vec!["tag:".into()])).is_err());
        assert_eq!(
            tags(Some(vec!["tag:a".into(), "tag:a".into()])).ok(),
            Some(vec!["tag:a".to_owned()])
        );
    }

    #[test]
    fn trust_credentials_need_scopes_and_sometimes_tags() {
        let v = |s: &[&str]| Some(s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
        assert!(trust_credential(None, None).is_err());
        assert!(trust_credential(v(&["bogus"]), None).is_err());
        assert!(trust_credential(v(&["auth_keys"]), None).is_err());
        assert!(trust_credential(v(&["all"]), v(&[])).is_err());
        assert!(trust_credential(v(&["auth_keys"]), v(&["tag:ci"])).is_ok());
        assert!(trust_credential(v(&["oauth_keys", "users:read"]), None).is_ok());
    }
}
