//! OAuth scopes: which scope names exist and what each one grants.
//!
//! The rules follow Tailscale's trust-credential scope table (kb/1623): `X:read` reads resource
//! `X`, `X` reads and writes it, `all:read` reads everything and `all` grants everything. The
//! legacy names map onto the new ones (`devices` = `auth_keys` + `devices:core` +
//! `devices:posture_attributes`, `routes` = `devices:routes`, `acl` = `policy_file`, …).

/// Whether an operation reads or changes a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// The resource names that have both a `X` and a `X:read` scope.
const RESOURCES: &[&str] = &[
    "account_settings",
    "api_access_tokens",
    "auth_keys",
    "device_invites",
    "devices:core",
    "devices:posture_attributes",
    "devices:routes",
    "dns",
    "federated_keys",
    "feature_settings",
    "log_streaming",
    "logs:network",
    "networking_settings",
    "oauth_apps",
    "oauth_keys",
    "policy_file",
    "services",
    "tailnets",
    "user_invites",
    "users",
    "webhooks",
];

/// Scopes that exist only in their read form.
const READ_ONLY_RESOURCES: &[&str] = &["logs:configuration"];

/// What one scope string grants.
enum Grant {
    /// `all` / `all:read`.
    Everything(Access),
    /// A list of resources at one access level.
    Resources(&'static [&'static str], Access),
    /// A resource that is not in the tables above (an unknown scope grants nothing).
    Named(String, Access),
}

fn grant_of(scope: &str) -> Grant {
    let (base, access) = match scope.strip_suffix(":read") {
        Some(base) => (base, Access::Read),
        None => (scope, Access::Write),
    };
    match base {
        "all" => Grant::Everything(access),
        // Legacy names (kb/1623): still accepted and still able to create auth keys.
        "devices" => Grant::Resources(
            &["auth_keys", "devices:core", "devices:posture_attributes"],
            access,
        ),
        "routes" => Grant::Resources(&["devices:routes"], access),
        "acl" => Grant::Resources(&["policy_file"], access),
        "logs" => Grant::Resources(&["logs:configuration"], Access::Read),
        "network-logs" => Grant::Resources(&["logs:network"], Access::Read),
        other => Grant::Named(other.to_owned(), access),
    }
}

fn access_covers(held: Access, needed: Access) -> bool {
    held == Access::Write || needed == Access::Read
}

/// Whether a set of scopes allows `access` to `resource` (e.g. `auth_keys`, `Write`).
pub(crate) fn grants(held: &[String], resource: &str, access: Access) -> bool {
    held.iter().any(|scope| match grant_of(scope) {
        Grant::Everything(a) => access_covers(a, access),
        Grant::Resources(list, a) => list.contains(&resource) && access_covers(a, access),
        Grant::Named(name, a) => name == resource && access_covers(a, access),
    })
}

/// Whether a holder of `held` may hand out `requested` (to a new OAuth client or an access
/// token): everything the requested scope grants must already be granted by `held`.
pub(crate) fn covers(held: &[String], requested: &str) -> bool {
    match grant_of(requested) {
        Grant::Everything(access) => held.iter().any(
            |scope| matches!(grant_of(scope), Grant::Everything(a) if access_covers(a, access)),
        ),
        Grant::Resources(list, access) => list.iter().all(|r| grants(held, r, access)),
        Grant::Named(name, access) => grants(held, &name, access),
    }
}

/// Whether `scope` is a scope name Tailscale knows (current or legacy).
pub(crate) fn is_known(scope: &str) -> bool {
    let base = scope.strip_suffix(":read").unwrap_or(scope);
    let legacy_rw = ["all", "devices", "routes", "acl"];
    let legacy_read_only = ["logs", "network-logs"];
    RESOURCES.contains(&base)
        || legacy_rw.contains(&base)
        || (base != scope
            && (READ_ONLY_RESOURCES.contains(&base) || legacy_read_only.contains(&base)))
}

/// The scope name that grants `access` to `resource`, for 403 messages.
pub(crate) fn name_for(resource: &str, access: Access) -> String {
    match access {
        Access::Read => format!("{resource}:read"),
        Access::Write => resource.to_owned(),
    }
}

/// Whether a trust credential with these scopes must carry tags: the spec names `auth_keys` and
/// `devices:core`; legacy `devices` and `all` grant those, so they need tags too.
pub(crate) fn requires_tags(scopes: &[String]) -> bool {
    scopes
        .iter()
        .any(|s| matches!(s.as_str(), "auth_keys" | "devices:core" | "devices" | "all"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn all_grants_everything_and_all_read_only_reads() {
        assert!(grants(&v(&["all"]), "oauth_keys", Access::Write));
        assert!(grants(&v(&["all:read"]), "oauth_keys", Access::Read));
        assert!(!grants(&v(&["all:read"]), "oauth_keys", Access::Write));
    }

    #[test]
    fn a_scope_reads_and_writes_and_its_read_form_only_reads() {
        assert!(grants(&v(&["auth_keys"]), "auth_keys", Access::Read));
        assert!(grants(&v(&["auth_keys"]), "auth_keys", Access::Write));
        assert!(grants(&v(&["auth_keys:read"]), "auth_keys", Access::Read));
        assert!(!grants(&v(&["auth_keys:read"]), "auth_keys", Access::Write));
        assert!(!grants(&v(&["auth_keys"]), "oauth_keys", Access::Read));
    }

    #[test]
    fn legacy_devices_means_auth_keys_and_devices_core() {
        let held = v(&["devices"]);
        assert!(grants(&held, "auth_keys", Access::Write));
        assert!(grants(&held, "devices:core", Access::Write));
        assert!(!grants(&held, "oauth_keys", Access::Read));
        assert!(grants(&v(&["devices:read"]), "auth_keys", Access::Read));
        assert!(!grants(&v(&["devices:read"]), "auth_keys", Access::Write));
    }

    #[test]
    fn covering_requires_every_granted_permission() {
        assert!(covers(&v(&["all"]), "all"));
        assert!(covers(&v(&["all"]), "users:read"));
        assert!(covers(&v(&["all:read"]), "all:read"));
        assert!(!covers(&v(&["all:read"]), "all"));
        assert!(!covers(&v(&["auth_keys", "oauth_keys"]), "all:read"));
        assert!(covers(&v(&["auth_keys"]), "auth_keys:read"));
        assert!(!covers(&v(&["auth_keys:read"]), "auth_keys"));
        assert!(covers(
            &v(&["auth_keys", "devices:core", "devices:posture_attributes"]),
            "devices"
        ));
        assert!(!covers(&v(&["auth_keys"]), "devices"));
    }

    #[test]
    fn known_scopes_include_legacy_names_and_reject_typos() {
        for ok in [
            "all",
            "all:read",
            "auth_keys",
            "oauth_keys:read",
            "devices",
            "logs:read",
            "logs:configuration:read",
            "network-logs:read",
        ] {
            assert!(is_known(ok), "{ok}");
        }
        for bad in [
            "auth_key",
            "",
            "logs",
            "logs:configuration",
            "all:write",
            ":read",
        ] {
            assert!(!is_known(bad), "{bad}");
        }
    }

    #[test]
    fn tags_are_required_for_scopes_that_mint_or_manage_devices() {
        assert!(requires_tags(&v(&["auth_keys"])));
        assert!(requires_tags(&v(&["users:read", "devices:core"])));
        assert!(requires_tags(&v(&["devices"])));
        assert!(requires_tags(&v(&["all"])));
        assert!(!requires_tags(&v(&[
            "oauth_keys",
            "auth_keys:read",
            "all:read"
        ])));
    }
}
