//! Validation of request and response bodies against Tailscale's `OpenAPI` description.
//!
//! The spec is `testdata/openapi/tailscale-openapi.yaml` (see `SOURCES.md` next to it), loaded
//! once per test binary. `OpenAPI` 3.1 schemas are JSON Schema 2020-12, so the whole document is
//! registered as one JSON Schema resource and each body is checked against a `$ref` into it;
//! the spec's own `$ref`s (`#/components/schemas/Key`, …) then resolve inside the document.
//! `format` is asserted (`date-time`, `uri`), not just annotated.
//!
//! Paths are the spec's templates, relative to the server URL `/api/v2`
//! (`/tailnet/{tailnet}/keys/{keyId}`); a leading `/api/v2` is accepted and ignored. Use
//! [`template_for`] to map a concrete path. Pass `Value::Null` for an empty body.
//!
//! # Where the spec cannot be used as it is
//!
//! Each adjustment is made in code below (`adjust` and `Spec::response_schema`), with the
//! reason next to it:
//!
//! - **Too strict:** `Webhook.providerType` (and the `providerType` schema used by requests)
//!   is an enum without `""`, although its description says the field is the empty string
//!   when no provider applies. `""` is added to the enum.
//! - **Too strict (undeclared statuses):** most operations declare only some error statuses;
//!   `POST /tailnet/{tailnet}/keys` declares only 404 and 500, and no operation declares 401,
//!   yet Tailscale answers 400/401/403 with the same `{"message"}` body. An error status
//!   (4xx/5xx) the operation does not declare is validated against `#/components/schemas/Error`;
//!   an undeclared success status is a validation failure.
//! - **Too loose:** `Key`, `KeyCapabilities` (and its nested objects), `Webhook`, `Device`,
//!   `DeviceRoutes`, `ConfigurationAuditLog` (with its `actor` and `target`), `User`, the four
//!   list wrappers and the key/webhook request bodies allow any extra property, so a misspelt
//!   field (`keytype`, `expiry_seconds`, `nodeID`) would pass. They get
//!   `additionalProperties: false`, `Key` requires `id`, `Webhook` requires `endpointId`,
//!   `Device` requires `nodeId`, `User` requires `id`, and the list wrappers require their
//!   array.
//!   If Tailscale adds a field, add it to the spec copy, not here.
//! - **Too strict, not validated here:** the `all` query parameter of `GET /tailnet/{tailnet}/keys`
//!   is marked `required: true` although it is optional in practice. Only bodies are validated,
//!   so this has no effect.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use jsonschema::{Draft, Registry, Validator};
use serde_json::{Value, json};

/// Where the spec copy lives, relative to this crate.
pub const SPEC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/openapi/tailscale-openapi.yaml"
);

/// The URI the spec document is registered under in the JSON Schema registry.
const SPEC_URI: &str = "urn:tsrotate:tailscale-openapi";

/// The prefix of the spec's server URL, which its path templates are relative to.
const SERVER_PREFIX: &str = "/api/v2";

/// A loaded spec with the adjustments described in the module docs.
pub struct Spec {
    document: Value,
    registry: Registry<'static>,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field(
                "paths",
                &self.document["paths"].as_object().map(serde_json::Map::len),
            )
            .finish_non_exhaustive()
    }
}

impl Spec {
    /// The repository's spec copy, parsed once per process.
    ///
    /// # Panics
    ///
    /// If the file is missing or not a usable spec: every fidelity test depends on it.
    #[must_use]
    pub fn load() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| {
            let text = std::fs::read_to_string(SPEC_PATH)
                .unwrap_or_else(|e| panic!("cannot read {SPEC_PATH}: {e}"));
            Spec::from_yaml(&text).unwrap_or_else(|e| panic!("cannot use {SPEC_PATH}: {e}"))
        })
    }

    /// Parses and adjusts a spec given as YAML (or JSON, which is YAML).
    pub fn from_yaml(text: &str) -> Result<Spec, String> {
        let mut document: Value =
            serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        if !document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
        {
            return Err("not an OpenAPI 3.1 document".to_owned());
        }
        adjust(&mut document)?;
        let registry = Registry::new()
            .add(
                SPEC_URI,
                Draft::Draft202012.create_resource(document.clone()),
            )
            .and_then(jsonschema::RegistryBuilder::prepare)
            .map_err(|e| format!("cannot register the spec as a JSON Schema resource: {e}"))?;
        Ok(Spec {
            document,
            registry,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// The spec's template for a concrete request path, e.g. `/api/v2/tailnet/-/keys/k1CNTRL`
    /// → `/tailnet/{tailnet}/keys/{keyId}`. A query string is ignored. When several templates
    /// match, the one with the most literal segments wins.
    #[must_use]
    pub fn template_for(&self, method: &str, concrete_path: &str) -> Option<String> {
        let method = method.to_ascii_lowercase();
        let path = concrete_path.split('?').next().unwrap_or_default();
        let path = strip_server_prefix(path);
        let wanted: Vec<&str> = path.split('/').collect();
        let paths = self.document["paths"].as_object()?;
        paths
            .iter()
            .filter(|(_, item)| item.get(&method).is_some())
            .filter_map(|(template, _)| {
                let segments: Vec<&str> = template.split('/').collect();
                if segments.len() != wanted.len() {
                    return None;
                }
                let mut literal = 0;
                for (t, w) in segments.iter().zip(&wanted) {
                    if t.starts_with('{') && t.ends_with('}') {
                        if w.is_empty() {
                            return None;
                        }
                    } else if t == w {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template))
            })
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, template)| template.clone())
    }

    /// Validates a response body for `method path_template` with `status`.
    pub fn validate_response(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let context = format!(
            "{} {} {status}",
            method.to_ascii_uppercase(),
            strip_server_prefix(path_template)
        );
        let pointer = self
            .response_schema(method, path_template, status)
            .map_err(|e| format!("{context}: {e}"))?;
        self.check(pointer.as_deref(), body)
            .map_err(|e| format!("{context}: {e}"))
    }

    /// Validates a request body for `method path_template`.
    pub fn validate_request(
        &self,
        method: &str,
        path_template: &str,
        body: &Value,
    ) -> Result<(), String> {
        let context = format!(
            "{} {} request",
            method.to_ascii_uppercase(),
            strip_server_prefix(path_template)
        );
        let (operation, operation_pointer) = self
            .operation(method, path_template)
            .map_err(|e| format!("{context}: {e}"))?;
        let pointer = match operation.get("requestBody") {
            None => None,
            Some(request_body) => {
                let (request_body, base) = self
                    .resolve(request_body, format!("{operation_pointer}/requestBody"))
                    .map_err(|e| format!("{context}: {e}"))?;
                json_schema_pointer(request_body, &base).map_err(|e| format!("{context}: {e}"))?
            }
        };
        self.check(pointer.as_deref(), body)
            .map_err(|e| format!("{context}: {e}"))
    }

    /// The operation object and its JSON pointer.
    fn operation(&self, method: &str, path_template: &str) -> Result<(&Value, String), String> {
        let template = strip_server_prefix(path_template);
        let method = method.to_ascii_lowercase();
        let item = self.document["paths"]
            .get(template)
            .ok_or_else(|| format!("path {template} is not in the spec"))?;
        let operation = item
            .get(&method)
            .ok_or_else(|| format!("the spec has no {method} operation for {template}"))?;
        Ok((
            operation,
            format!("/paths/{}/{method}", escape_pointer(template)),
        ))
    }

    /// Follows a `$ref` into the document (e.g. `#/components/responses/404`).
    fn resolve<'a>(
        &'a self,
        value: &'a Value,
        pointer: String,
    ) -> Result<(&'a Value, String), String> {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let target = reference
                    .strip_prefix('#')
                    .ok_or_else(|| format!("external reference {reference} is not supported"))?;
                let resolved = self
                    .document
                    .pointer(target)
                    .ok_or_else(|| format!("dangling reference {reference}"))?;
                Ok((resolved, target.to_owned()))
            }
            None => Ok((value, pointer)),
        }
    }

    /// The JSON pointer of the response schema, or `None` when the response has no body.
    fn response_schema(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
    ) -> Result<Option<String>, String> {
        let (operation, operation_pointer) = self.operation(method, path_template)?;
        let responses = operation
            .get("responses")
            .ok_or("the operation declares no responses")?;
        let code = status.to_string();
        let range = format!("{}XX", status / 100);
        let declared = [code.as_str(), range.as_str(), "default"]
            .into_iter()
            .find_map(|key| responses.get(key).map(|r| (key, r)));
        match declared {
            Some((key, response)) => {
                let (response, base) =
                    self.resolve(response, format!("{operation_pointer}/responses/{key}"))?;
                json_schema_pointer(response, &base)
            }
            // Too strict: operations leave out error statuses Tailscale does answer (401
            // everywhere, 400/403 on the keys operations), always with the `Error` body.
            None if status >= 400 => Ok(Some("/components/schemas/Error".to_owned())),
            None => Err(format!(
                "status {status} is not declared (declared: {})",
                responses
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            )),
        }
    }

    /// Validates `body` against the schema at `pointer`, or requires an empty body (`Null`).
    fn check(&self, pointer: Option<&str>, body: &Value) -> Result<(), String> {
        let Some(pointer) = pointer else {
            return if body.is_null() {
                Ok(())
            } else {
                Err(format!("the spec declares no body, got {body}"))
            };
        };
        let validator = self.validator(pointer)?;
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("at `{}`: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "does not match {pointer}:\n  {}\nbody: {body}",
                errors.join("\n  ")
            ))
        }
    }

    fn validator(&self, pointer: &str) -> Result<Arc<Validator>, String> {
        let mut cache = self
            .validators
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(validator) = cache.get(pointer) {
            return Ok(Arc::clone(validator));
        }
        let reference = format!("{SPEC_URI}#{}", encode_fragment(pointer));
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&self.registry)
            .should_validate_formats(true)
            .offline()
            .build(&json!({ "$ref": reference }))
            .map_err(|e| format!("cannot compile schema {pointer}: {e}"))?;
        let validator = Arc::new(validator);
        cache.insert(pointer.to_owned(), Arc::clone(&validator));
        Ok(validator)
    }
}

/// The spec's template for a concrete path; see [`Spec::template_for`].
#[must_use]
pub fn template_for(method: &str, concrete_path: &str) -> Option<String> {
    Spec::load().template_for(method, concrete_path)
}

/// Validates a response body against the repository's spec; see [`Spec::validate_response`].
pub fn validate_response(
    method: &str,
    path_template: &str,
    status: u16,
    body: &Value,
) -> Result<(), String> {
    Spec::load().validate_response(method, path_template, status, body)
}

/// Validates a request body against the repository's spec; see [`Spec::validate_request`].
pub fn validate_request(method: &str, path_template: &str, body: &Value) -> Result<(), String> {
    Spec::load().validate_request(method, path_template, body)
}

fn strip_server_prefix(path: &str) -> &str {
    match path.strip_prefix(SERVER_PREFIX) {
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// RFC 6901 escaping of one reference token.
fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Percent-encodes the characters of a JSON pointer that may not appear in a URI fragment
/// (`{`, `}` in path templates), as RFC 6901 §6 requires.
fn encode_fragment(pointer: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(pointer.len());
    for c in pointer.chars() {
        if c.is_ascii_alphanumeric() || "/~-._!$&'()*+,;=:@".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// The pointer of `content."application/json".schema` in a response or request body object,
/// or `None` when it has no content.
fn json_schema_pointer(object: &Value, base: &str) -> Result<Option<String>, String> {
    let Some(content) = object.get("content") else {
        return Ok(None);
    };
    if content
        .get("application/json")
        .and_then(|c| c.get("schema"))
        .is_some()
    {
        Ok(Some(format!("{base}/content/application~1json/schema")))
    } else {
        Err(format!(
            "no application/json schema (content types: {})",
            content
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ))
    }
}

/// The adjustments described in the module docs. Every target must exist, so that a spec
/// update that moves one fails loudly instead of silently validating less.
fn adjust(document: &mut Value) -> Result<(), String> {
    fn at<'a>(document: &'a mut Value, pointer: &str) -> Result<&'a mut Value, String> {
        document
            .pointer_mut(pointer)
            .ok_or_else(|| format!("spec adjustment target {pointer} is missing"))
    }
    let keys = "/paths/~1tailnet~1{tailnet}~1keys";
    let key = "/paths/~1tailnet~1{tailnet}~1keys~1{keyId}";
    let webhooks = "/paths/~1tailnet~1{tailnet}~1webhooks";
    let devices = "/paths/~1tailnet~1{tailnet}~1devices";
    let audit = "/paths/~1tailnet~1{tailnet}~1logging~1configuration";
    let json_schema = "content/application~1json/schema";

    // Too strict: the description says "or an empty string if none are applicable".
    for pointer in [
        "/components/schemas/Webhook/properties/providerType/enum",
        "/components/schemas/providerType/enum",
    ] {
        let values = at(document, pointer)?
            .as_array_mut()
            .ok_or_else(|| format!("{pointer} is not an array"))?;
        if !values.iter().any(|v| v == "") {
            values.push(Value::from(""));
        }
    }

    // Too loose: no `additionalProperties: false` anywhere, so misspelt fields would pass.
    let closed = [
        "/components/schemas/Key".to_owned(),
        "/components/schemas/KeyCapabilities".to_owned(),
        "/components/schemas/KeyCapabilities/properties/devices".to_owned(),
        "/components/schemas/KeyCapabilities/properties/devices/properties/create".to_owned(),
        "/components/schemas/Webhook".to_owned(),
        format!("{keys}/get/responses/200/{json_schema}"),
        format!("{keys}/post/requestBody/{json_schema}"),
        format!("{key}/put/requestBody/{json_schema}"),
        format!("{webhooks}/get/responses/200/{json_schema}"),
        format!("{webhooks}/post/requestBody/{json_schema}"),
        "/components/schemas/Device".to_owned(),
        "/components/schemas/DeviceRoutes".to_owned(),
        "/components/schemas/ConfigurationAuditLog".to_owned(),
        "/components/schemas/ConfigurationAuditLog/properties/actor".to_owned(),
        "/components/schemas/ConfigurationAuditLog/properties/target".to_owned(),
        "/components/schemas/User".to_owned(),
        format!("{devices}/get/responses/200/{json_schema}"),
        format!("{audit}/get/responses/200/{json_schema}"),
    ];
    for pointer in &closed {
        let schema = at(document, pointer)?;
        if schema.get("properties").is_none() {
            return Err(format!("{pointer} has no properties to close over"));
        }
        schema["additionalProperties"] = Value::Bool(false);
    }

    // Too loose: nothing is required. These fields identify the object in every response.
    for (pointer, field) in [
        ("/components/schemas/Key".to_owned(), "id"),
        ("/components/schemas/Webhook".to_owned(), "endpointId"),
        (format!("{keys}/get/responses/200/{json_schema}"), "keys"),
        (
            format!("{webhooks}/get/responses/200/{json_schema}"),
            "webhooks",
        ),
        ("/components/schemas/Device".to_owned(), "nodeId"),
        ("/components/schemas/User".to_owned(), "id"),
        (
            format!("{devices}/get/responses/200/{json_schema}"),
            "devices",
        ),
        (format!("{audit}/get/responses/200/{json_schema}"), "logs"),
    ] {
        let schema = at(document, &pointer)?;
        let required = schema
            .as_object_mut()
            .ok_or_else(|| format!("{pointer} is not an object"))?
            .entry("required")
            .or_insert_with(|| json!([]));
        if let Some(list) = required.as_array_mut()
            && !list.iter().any(|v| v == field)
        {
            list.push(Value::from(field));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> &'static Spec {
        Spec::load()
    }

    #[test]
    fn concrete_paths_map_to_templates() {
        let s = spec();
        assert_eq!(
            s.template_for("GET", "/api/v2/tailnet/-/keys/k123CNTRL")
                .as_deref(),
            Some("/tailnet/{tailnet}/keys/{keyId}")
        );
        assert_eq!(
            s.template_for("get", "/api/v2/tailnet/example.com/keys?all=true")
                .as_deref(),
            Some("/tailnet/{tailnet}/keys")
        );
        assert_eq!(
            s.template_for("POST", "/webhooks/abc/rotate").as_deref(),
            Some("/webhooks/{endpointId}/rotate")
        );
        assert_eq!(s.template_for("PATCH", "/api/v2/tailnet/-/keys/k1"), None);
        assert_eq!(s.template_for("GET", "/api/v2/oauth/token"), None);
        assert_eq!(s.template_for("GET", "/api/v2/tailnet//keys"), None);
    }

    #[test]
    fn the_specs_own_key_list_example_validates() {
        let s = spec();
        let example = s.document.pointer(
            "/paths/~1tailnet~1{tailnet}~1keys/get/responses/200/content/application~1json/schema/properties/keys/example",
        ).cloned().expect("the spec has a keys example");
        let body = json!({ "keys": example });
        s.validate_response("GET", "/tailnet/{tailnet}/keys", 200, &body)
            .expect("spec example validates");
    }

    #[test]
    fn misspelt_fields_and_bad_formats_are_caught() {
        let s = spec();
        let t = "/api/v2/tailnet/{tailnet}/keys/{keyId}";
        let good = json!({"id": "k1CNTRL", "keyType": "auth", "created": "2021-12-09T23:22:39Z", "invalid": false});
        s.validate_response("GET", t, 200, &good)
            .expect("valid key");
        for bad in [
            json!({"id": "k1CNTRL", "keytype": "auth"}),
            json!({"id": "k1CNTRL", "created": "yesterday"}),
            json!({"id": "k1CNTRL", "keyType": "personal"}),
            json!({"keyType": "auth"}),
            json!({"id": "k1CNTRL", "capabilities": {"devices": {"create": {"reusable": "yes"}}}}),
            json!({"id": "k1CNTRL", "capabilities": {"devices": {"create": {"reuseable": true}}}}),
        ] {
            assert!(s.validate_response("GET", t, 200, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn undeclared_error_statuses_use_the_error_schema() {
        let s = spec();
        let t = "/tailnet/{tailnet}/keys";
        s.validate_response("POST", t, 400, &json!({"message": "bad"}))
            .expect("400");
        s.validate_response("POST", t, 401, &json!({"message": "no"}))
            .expect("401");
        s.validate_response("POST", t, 404, &json!({"message": "nf"}))
            .expect("404");
        assert!(
            s.validate_response("POST", t, 403, &json!({"error": "x"}))
                .is_err()
        );
        assert!(s.validate_response("POST", t, 201, &json!({})).is_err());
    }

    #[test]
    fn responses_without_content_require_an_empty_body() {
        let s = spec();
        let t = "/tailnet/{tailnet}/keys/{keyId}";
        s.validate_response("DELETE", t, 200, &Value::Null)
            .expect("empty");
        assert!(s.validate_response("DELETE", t, 200, &json!({})).is_err());
    }

    #[test]
    fn webhooks_may_have_an_empty_provider_type() {
        let s = spec();
        let webhook = json!({"endpointId": "abc", "endpointUrl": "https://example.com/hook",
            "providerType": "", "subscriptions": ["nodeCreated"], "created": "2022-12-01T05:23:30Z"});
        s.validate_response("GET", "/webhooks/{endpointId}", 200, &webhook)
            .expect("empty provider type");
        let mut bad = webhook.clone();
        bad["providerType"] = json!("teams");
        assert!(
            s.validate_response("GET", "/webhooks/{endpointId}", 200, &bad)
                .is_err()
        );
    }

    #[test]
    fn request_bodies_are_validated_and_closed() {
        let s = spec();
        let t = "/tailnet/{tailnet}/keys";
        s.validate_request(
            "POST",
            t,
            &json!({"capabilities": {"devices": {}}, "expirySeconds": 86400}),
        )
        .expect("auth key request");
        s.validate_request(
            "POST",
            t,
            &json!({"keyType": "client", "scopes": ["auth_keys"], "tags": ["tag:ci"]}),
        )
        .expect("client request");
        assert!(
            s.validate_request("POST", t, &json!({"keyType": "api"}))
                .is_err()
        );
        assert!(
            s.validate_request("POST", t, &json!({"expiry_seconds": 5}))
                .is_err()
        );
        assert!(
            s.validate_request("POST", t, &json!({"expirySeconds": "5"}))
                .is_err()
        );
        assert!(
            s.validate_request("GET", t, &json!({})).is_err(),
            "GET has no body"
        );
        s.validate_request("GET", t, &Value::Null)
            .expect("GET without body");
    }
}
