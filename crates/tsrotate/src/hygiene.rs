//! Credential hygiene: what is risky about a tailnet's keys, how risky, and the one-line fix.
//!
//! [`audit`] is a pure function of the key list (as `GET /keys?all=true` returns it), the
//! time, [`Options`] and what this machine's journals say of tsrotate's own rotations
//! ([`Rotations`]). It reads nothing and prints nothing; `tsrotate audit` renders its
//! [`Finding`]s and turns them into an exit code, `tsrotate keys list` uses [`Kind`] and
//! [`rotation_marker`] for its table.
//!
//! # Rules
//!
//! Every rule has a stable ID (for suppressions and CI filters) and one severity, except
//! `broad-scopes`, whose severity follows the broadest scope found. Dead keys (revoked,
//! expired, used up) are never reported: they can do no harm. OAuth access tokens (`keyType:
//! api` without an owner) are short-lived by design and governed by their client, so only the
//! rotation rules look at them.
//!
//! | rule | severity | reported when | why this severity |
//! |---|---|---|---|
//! | `broad-scopes` | high | an OAuth client or federated identity has `all` | it never expires, changes anything, assigns any tag and covers APIs that do not exist yet: a leak is a tailnet takeover |
//! | `reusable-untagged-auth-key` | high | an auth key is reusable, not ephemeral and untagged | whoever holds it adds any number of lasting devices under a person's identity and ACL rights |
//! | `personal-api-token` | medium | an API access token belongs to a user | a person's full rights for up to 90 days, unscoped, and gone when they leave; it is bounded in time and sometimes the only option, so a migration target rather than an emergency |
//! | `broad-subject` | high | a federated identity accepts any subject (`*`), or any repository of a GitHub owner (`repo:acme/*`) | any workload of that issuer, or of that organization (a fork's pull request, a new repository), gets the identity's access |
//! | `broad-subject` | medium | a federated identity for GitHub Actions accepts any ref, pull request or environment of one repository (`repo:acme/infra:*`) | a branch anyone with push access creates, or a pull request, runs with production access |
//! | `reused-audience` | medium | two live federated identities expect the same audience | a token minted for one workload is accepted by the other identity wherever issuer and subject match too: the audience no longer tells them apart |
//! | `broad-scopes` | medium | a trust credential can both write credentials (`auth_keys`, `oauth_keys`, `federated_keys`, `api_access_tokens`, legacy `devices`) and administer the tailnet (any other write scope except device scopes) | two unrelated jobs share one secret, so a leak of either gives both |
//! | `expiring-soon` | medium | a key expires within the window (default 14 days) | whatever uses it breaks on that day unless it is rotated |
//! | `old-key` | medium | a key was created longer ago than the maximum age (default 180 days) | the longer a secret lives the more places it has been copied to; OAuth clients never expire, so age is their only bound |
//! | `unfinished-rotation` | medium | a live key was minted by a rotation whose journal here has not finished (or cannot be read) | the old key may still be live and consumers may be split between the two |
//! | `stray-rotation-key` | medium | a live key was minted by a rotation that finished with another key, or was rolled back | a live key nothing is meant to hold: an orphan |
//! | `broad-scopes` | low | a trust credential has `all:read` | reads everything (policy file, users, logs) yet changes nothing |
//! | `user-owned-auth-key` | low | an untagged auth key belongs to a user (and `reusable-untagged-auth-key` does not already report it) | the key and its devices go when that person is offboarded; a person's own single-use key for a laptop is fine, so it is only worth a look |
//! | `unknown-rotation` | low | a live key was minted by a rotation this machine has no journal of | most likely run from another machine or CI job; it may also be an orphan of a lost state directory |
//!
//! A custom claim rule that pins the same thing without a wildcard (`repository`,
//! `repository_owner`, `ref`, `environment`) narrows the subject, so `broad-subject` then
//! stays quiet about that part.
//!
//! [`could_federate`] judges the configuration rather than the key list: a managed credential
//! kept in a GitHub Actions secret (`could-federate`, low) could be no secret at all, because
//! a workflow can present its own identity token to a federated identity; the fix is
//! `tsrotate migrate-to-federated`. Low: the secret is as safe as GitHub keeps it, this is a
//! migration target, not a leak.
//!
//! No rule reports `info` or `critical` yet: the scale is fixed so that `--fail-on` values stay
//! meaningful when rules are added (a credential found leaked would be critical).
//!
//! ## Which scopes count as "broader than the use needs"
//!
//! The API does not say what a client is used for: it does not link access tokens or the auth
//! keys they mint back to their client. What can be seen is the client's own scope list, so
//! the heuristic judges that alone. `all` is always broader than any one job needs. A client
//! that writes credentials and also writes tailnet administration (policy file, DNS, users,
//! settings, webhooks, logging, ...) does two jobs: rotating keys or enrolling devices never
//! needs the second. Device scopes (`devices:core`, `devices:routes`,
//! `devices:posture_attributes`, `device_invites`, `services`, legacy `routes`) go with
//! credentials in practice (the Kubernetes operator holds `devices:core` and `auth_keys`), so
//! they do not count as administration. Unknown write scopes do count: a name this version does
//! not know is not assumed harmless. `:read` scopes other than `all:read` are never reported.
//!
//! ## Keys minted by tsrotate
//!
//! Every key a rotation mints carries `tsrotate r<rotation id>` in its description
//! ([`crate::rotate::mint_description`]). [`rotation_marker`] finds it; [`Rotations::read`]
//! says what this machine's journals know of each rotation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::api::{Key, KeyType};
use crate::journal::{self, Journal};
use crate::key::KeyId;
use crate::rotate::{End, State};

/// Stable rule IDs, as they appear in `Finding::rule` and JSON output.
pub mod rule {
    /// A personal API access token exists.
    pub const PERSONAL_API_TOKEN: &str = "personal-api-token";
    /// A key expires within the window.
    pub const EXPIRING_SOON: &str = "expiring-soon";
    /// A reusable, non-ephemeral, untagged auth key.
    pub const REUSABLE_UNTAGGED_AUTH_KEY: &str = "reusable-untagged-auth-key";
    /// An untagged auth key owned by a user.
    pub const USER_OWNED_AUTH_KEY: &str = "user-owned-auth-key";
    /// A key older than the maximum age.
    pub const OLD_KEY: &str = "old-key";
    /// A trust credential with broader scopes than one job needs.
    pub const BROAD_SCOPES: &str = "broad-scopes";
    /// A key minted by a rotation that has not finished.
    pub const UNFINISHED_ROTATION: &str = "unfinished-rotation";
    /// A key minted by a rotation this machine has no journal of.
    pub const UNKNOWN_ROTATION: &str = "unknown-rotation";
    /// A live key minted by a rotation that finished without it.
    pub const STRAY_ROTATION_KEY: &str = "stray-rotation-key";
    /// A federated identity whose subject pattern accepts more workloads than one job.
    pub const BROAD_SUBJECT: &str = "broad-subject";
    /// Two federated identities that expect the same audience.
    pub const REUSED_AUDIENCE: &str = "reused-audience";
    /// A managed credential kept in a GitHub Actions secret, which federation could replace.
    pub const COULD_FEDERATE: &str = "could-federate";

    /// Every rule, in the order of the module documentation.
    pub const ALL: [&str; 12] = [
        BROAD_SCOPES,
        BROAD_SUBJECT,
        REUSED_AUDIENCE,
        COULD_FEDERATE,
        REUSABLE_UNTAGGED_AUTH_KEY,
        PERSONAL_API_TOKEN,
        EXPIRING_SOON,
        OLD_KEY,
        UNFINISHED_ROTATION,
        STRAY_ROTATION_KEY,
        USER_OWNED_AUTH_KEY,
        UNKNOWN_ROTATION,
    ];
}

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Info,
    /// Worth a look; often fine.
    Low,
    /// Fix it soon.
    Medium,
    /// Fix it now.
    High,
    /// The tailnet is exposed right now.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Self; 5] = [
        Self::Info,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];

    /// The lowercase name used in JSON and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of `info`, `low`, `medium`, `high`, `critical`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity `{0}`: use info, low, medium, high or critical")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

/// What kind of key object a [`Key`] is, as tsrotate names it in output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `keyType: auth`.
    AuthKey,
    /// `keyType: client`.
    OauthClient,
    /// `keyType: federated`.
    FederatedIdentity,
    /// `keyType: api` owned by a user: a personal API access token.
    ApiToken,
    /// `keyType: api` owned by the tailnet: an hour-long token issued to an OAuth client.
    OauthAccessToken,
    /// No `keyType`, or one this version does not know.
    Unknown,
}

impl Kind {
    /// The kind of `key`. `keyType: api` covers two things; the owner tells them apart,
    /// because only the token endpoint makes tailnet-owned API tokens.
    #[must_use]
    pub fn of(key: &Key) -> Self {
        match key.key_type {
            Some(KeyType::Auth) => Self::AuthKey,
            Some(KeyType::Client) => Self::OauthClient,
            Some(KeyType::Federated) => Self::FederatedIdentity,
            Some(KeyType::Api) if key.is_tailnet_owned() => Self::OauthAccessToken,
            Some(KeyType::Api) => Self::ApiToken,
            Some(KeyType::Unknown) | None => Self::Unknown,
        }
    }

    /// The stable machine name, as in JSON (`auth-key`, `oauth-client`, ...).
    #[must_use]
    pub fn slug(self) -> &'static str {
        match self {
            Self::AuthKey => "auth-key",
            Self::OauthClient => "oauth-client",
            Self::FederatedIdentity => "federated-identity",
            Self::ApiToken => "api-token",
            Self::OauthAccessToken => "oauth-access-token",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AuthKey => "auth key",
            Self::OauthClient => "OAuth client",
            Self::FederatedIdentity => "federated identity",
            Self::ApiToken => "API access token",
            Self::OauthAccessToken => "OAuth access token",
            Self::Unknown => "key",
        })
    }
}

/// Thresholds of the time-based rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `expiring-soon` reports keys that expire within this long. Default 14 days: two weeks
    /// covers a holiday and still leaves a working week to rotate.
    pub expiring_within: Duration,
    /// `old-key` reports keys created longer ago than this. Default 180 days: auth keys and
    /// API tokens live at most 90, so at the default only credentials that never expire (OAuth
    /// clients, federated identities) can trip it.
    pub max_age: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            expiring_within: Duration::days(14),
            max_age: Duration::days(180),
        }
    }
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's stable ID (see [`rule`]).
    pub rule: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// The key.
    pub key_id: KeyId,
    /// What kind of key it is.
    pub kind: Kind,
    /// What is wrong, in one line.
    pub summary: String,
    /// What to do about it, in one line.
    pub fix: String,
}

/// What a journal on this machine says of one rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationOutcome {
    /// Started and not ended: `resume` or `rollback` can end it.
    Unfinished,
    /// Ended with this key in every place and every other minted key revoked.
    Done(KeyId),
    /// Ended with the old key back in place and every minted key revoked.
    RolledBack,
    /// Given up by a person, its keys as it left them.
    Abandoned,
    /// The journal exists but cannot be read; treated like an unfinished rotation, because
    /// only `resume` can tell what it did.
    Unreadable,
}

/// The rotations this machine has journals of, by rotation ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotations(BTreeMap<String, RotationOutcome>);

impl Rotations {
    /// No rotations known.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Record what is known of rotation `id`.
    pub fn insert(&mut self, id: impl Into<String>, outcome: RotationOutcome) {
        self.0.insert(id.into(), outcome);
    }

    /// What is known of rotation `id`, if this machine has its journal.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&RotationOutcome> {
        self.0.get(id)
    }

    /// Every rotation with a journal under `state_dir`. A state directory without journals
    /// (or without a `rotations/` folder) is no rotations, not an error; a journal that cannot
    /// be read or replayed, or whose seal does not verify with `key`, is
    /// [`RotationOutcome::Unreadable`].
    pub fn read(state_dir: &Path, key: &journal::JournalKey) -> Result<Self, journal::Error> {
        let mut rotations = Self::new();
        for id in journal::list(state_dir)? {
            let outcome = journal::read(&Journal::path_of(state_dir, &id), key)
                .ok()
                .and_then(|records| State::replay(&records))
                .map_or(RotationOutcome::Unreadable, |state| match state.end {
                    None => RotationOutcome::Unfinished,
                    Some(End::Done(kept)) => RotationOutcome::Done(kept),
                    Some(End::RolledBack) => RotationOutcome::RolledBack,
                    Some(End::Abandoned) => RotationOutcome::Abandoned,
                });
            rotations.insert(id, outcome);
        }
        Ok(rotations)
    }
}

/// The rotation ID in a key description written by [`crate::rotate::mint_description`]:
/// `tsrotate r<14-digit UTC time><suffix>` as its own words, the last one if several.
/// Anything looser ("tsrotate rollout") is not a marker.
#[must_use]
pub fn rotation_marker(description: &str) -> Option<&str> {
    const MARKER: &str = "tsrotate ";
    description
        .match_indices(MARKER)
        .filter(|(i, _)| *i == 0 || description.as_bytes()[i - 1] == b' ')
        .filter_map(|(i, _)| description[i + MARKER.len()..].split(' ').next())
        .filter(|word| is_rotation_id(word))
        .last()
}

/// `r`, 14 digits (the UTC start time), then a short lowercase suffix
/// ([`crate::rotate::plan::new_rotation_id`]).
fn is_rotation_id(word: &str) -> bool {
    let bytes = word.as_bytes();
    (16..=40).contains(&bytes.len())
        && bytes[0] == b'r'
        && bytes[1..15].iter().all(u8::is_ascii_digit)
        && bytes[15..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Every finding for `keys` as of `now`, highest severity first (then by rule and key ID).
#[must_use]
pub fn audit(
    keys: &[Key],
    now: OffsetDateTime,
    options: &Options,
    rotations: &Rotations,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Audience -> the live federated identities that expect it.
    let mut audiences: BTreeMap<&str, Vec<&KeyId>> = BTreeMap::new();
    for key in keys.iter().filter(|k| !k.is_dead_at(now)) {
        if Kind::of(key) == Kind::FederatedIdentity
            && let Some(audience) = key.federation.audience.as_deref().filter(|a| !a.is_empty())
        {
            audiences.entry(audience).or_default().push(&key.id);
        }
    }
    for key in keys.iter().filter(|k| !k.is_dead_at(now)) {
        let kind = Kind::of(key);
        let mut report = |rule: &'static str, severity: Severity, summary: String, fix: String| {
            findings.push(Finding {
                rule,
                severity,
                key_id: key.id.clone(),
                kind,
                summary,
                fix,
            });
        };
        if kind != Kind::OauthAccessToken {
            personal_api_token(key, kind, &mut report);
            expiring_soon(key, kind, now, options, &mut report);
            auth_key_tags(key, kind, &mut report);
            old_key(key, kind, now, options, &mut report);
            broad_scopes(key, kind, &mut report);
        }
        if kind == Kind::FederatedIdentity {
            broad_subject(key, &mut report);
            reused_audience(key, &audiences, &mut report);
        }
        minted_by_rotation(key, rotations, &mut report);
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule.cmp(b.rule))
            .then_with(|| a.key_id.cmp(&b.key_id))
    });
    findings
}

/// How a rule reports: rule ID, severity, summary, fix.
type Report<'a> = dyn FnMut(&'static str, Severity, String, String) + 'a;

fn owner(key: &Key) -> &str {
    key.user_id.as_deref().unwrap_or_default()
}

fn personal_api_token(key: &Key, kind: Kind, report: &mut Report<'_>) {
    if kind != Kind::ApiToken {
        return;
    }
    report(
        rule::PERSONAL_API_TOKEN,
        Severity::Medium,
        format!(
            "personal API access token of {}: it acts with that person's full rights, unscoped, and dies with their account",
            owner(key)
        ),
        format!(
            "move what uses it to an OAuth client with only the scopes it needs, then revoke it: `tsrotate revoke {}`",
            key.id
        ),
    );
}

fn expiring_soon(
    key: &Key,
    kind: Kind,
    now: OffsetDateTime,
    options: &Options,
    report: &mut Report<'_>,
) {
    let Some(expires) = key.expires else {
        return;
    };
    let left = expires - now;
    if left > options.expiring_within {
        return;
    }
    let when = match left.whole_days() {
        0 => format!("in {} hours", left.whole_hours()),
        1 => "in 1 day".to_owned(),
        days => format!("in {days} days"),
    };
    let fix = if kind == Kind::ApiToken {
        format!(
            "create its successor in the admin console and swap it in with `tsrotate rotate {}`, or move what uses it to an OAuth client",
            key.id
        )
    } else {
        format!("rotate it before then: `tsrotate rotate {}`", key.id)
    };
    report(
        rule::EXPIRING_SOON,
        Severity::Medium,
        format!(
            "{kind} expires {when} ({}): whatever uses it stops working then",
            date(expires)
        ),
        fix,
    );
}

fn auth_key_tags(key: &Key, kind: Kind, report: &mut Report<'_>) {
    if kind != Kind::AuthKey {
        return;
    }
    let caps = key.device_capabilities();
    if !caps.tags.is_empty() {
        return;
    }
    if caps.reusable && !caps.ephemeral {
        let who = if key.is_tailnet_owned() {
            "the tailnet".to_owned()
        } else {
            owner(key).to_owned()
        };
        report(
            rule::REUSABLE_UNTAGGED_AUTH_KEY,
            Severity::High,
            format!(
                "reusable, not ephemeral and untagged: whoever holds it can add any number of lasting devices as {who}"
            ),
            format!(
                "replace it with a tagged key (`tsrotate rotate {} --tags tag:NAME`), or an ephemeral one if its devices are short-lived (`--ephemeral true`)",
                key.id
            ),
        );
    } else if !key.is_tailnet_owned() {
        // A reusable untagged key was reported above with the same fix; one finding is enough.
        report(
            rule::USER_OWNED_AUTH_KEY,
            Severity::Low,
            format!(
                "untagged auth key owned by {}: it and the devices it registers go when that person is offboarded",
                owner(key)
            ),
            format!(
                "if a service rather than a person uses it, replace it with a tagged key: `tsrotate rotate {} --tags tag:NAME`",
                key.id
            ),
        );
    }
}

fn old_key(key: &Key, kind: Kind, now: OffsetDateTime, options: &Options, report: &mut Report<'_>) {
    let Some(created) = key.created else {
        return;
    };
    let age = now - created;
    if age <= options.max_age {
        return;
    }
    let fix = match kind {
        Kind::ApiToken => format!(
            "create its successor in the admin console and swap it in with `tsrotate rotate {}`",
            key.id
        ),
        _ => format!("rotate it: `tsrotate rotate {}`", key.id),
    };
    report(
        rule::OLD_KEY,
        Severity::Medium,
        format!(
            "{kind} created {} days ago ({}), more than the {} days allowed",
            age.whole_days(),
            date(created),
            options.max_age.whole_days()
        ),
        fix,
    );
}

/// What one scope lets a credential do, for the `broad-scopes` heuristic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScopeClass {
    /// `all`.
    Everything,
    /// `all:read`.
    ReadEverything,
    /// Creates or deletes credentials.
    CredentialWrite,
    /// Changes devices: goes with credential work in practice.
    DeviceWrite,
    /// Changes the tailnet's administration (or a write scope this version does not know).
    AdminWrite,
    /// Reads one resource.
    Read,
}

fn scope_class(scope: &str) -> ScopeClass {
    match scope {
        "all" => ScopeClass::Everything,
        "all:read" => ScopeClass::ReadEverything,
        s if s.ends_with(":read") => ScopeClass::Read,
        "auth_keys" | "oauth_keys" | "federated_keys" | "api_access_tokens" | "devices" => {
            ScopeClass::CredentialWrite
        }
        "devices:core"
        | "devices:routes"
        | "devices:posture_attributes"
        | "device_invites"
        | "services"
        | "routes" => ScopeClass::DeviceWrite,
        _ => ScopeClass::AdminWrite,
    }
}

fn broad_scopes(key: &Key, kind: Kind, report: &mut Report<'_>) {
    if !matches!(kind, Kind::OauthClient | Kind::FederatedIdentity) {
        return;
    }
    let of = |class: ScopeClass| -> Vec<&str> {
        key.scopes
            .iter()
            .map(String::as_str)
            .filter(|s| scope_class(s) == class)
            .collect()
    };
    let replace = format!("then delete this one with `tsrotate revoke {}`", key.id);
    if !of(ScopeClass::Everything).is_empty() {
        report(
            rule::BROAD_SCOPES,
            Severity::High,
            format!(
                "{kind} with the `all` scope: it can change anything in the tailnet, assign any tag, and use APIs that do not exist yet"
            ),
            format!(
                "replace it with one that has only the scopes its users need (to mint auth keys: `auth_keys` and their tags), {replace}"
            ),
        );
        return;
    }
    let credentials = of(ScopeClass::CredentialWrite);
    let admin = of(ScopeClass::AdminWrite);
    if !credentials.is_empty() && !admin.is_empty() {
        report(
            rule::BROAD_SCOPES,
            Severity::Medium,
            format!(
                "{kind} can both manage credentials ({}) and administer the tailnet ({}): one leaked secret gives both",
                credentials.join(", "),
                admin.join(", ")
            ),
            format!("split it into one per job, each with only that job's scopes, {replace}"),
        );
        return;
    }
    if !of(ScopeClass::ReadEverything).is_empty() {
        report(
            rule::BROAD_SCOPES,
            Severity::Low,
            format!(
                "{kind} with the `all:read` scope: it reads everything, including the policy file, users and logs"
            ),
            format!(
                "replace it with one that has only the `:read` scopes its users need, {replace}"
            ),
        );
    }
}

/// A claim rule that pins `claim` to one value (no wildcard).
fn pinned(key: &Key, claim: &str) -> bool {
    key.federation
        .custom_claim_rules
        .as_ref()
        .and_then(|rules| rules.get(claim))
        .is_some_and(|p| !p.is_empty() && !p.contains('*'))
}

fn broad_subject(key: &Key, report: &mut Report<'_>) {
    // An answer without the field says nothing of the pattern.
    let Some(subject) = key.federation.subject.as_deref() else {
        return;
    };
    let fix = format!(
        "narrow the subject of {} to the one repository and branch or environment that need it (e.g. `repo:OWNER/REPO:ref:refs/heads/main`) in the admin console's Trust credentials, or add a claim rule that pins it",
        key.id
    );
    if subject.chars().all(|c| c == '*') {
        if !pinned(key, "repository") && !pinned(key, "repository_owner") {
            report(
                rule::BROAD_SUBJECT,
                Severity::High,
                format!(
                    "accepts any subject (`{}`): every workload its issuer vouches for gets this identity's access",
                    if subject.is_empty() {
                        "(empty)"
                    } else {
                        subject
                    }
                ),
                fix,
            );
        }
        return;
    }
    // GitHub Actions: `repo:OWNER/REPO:KIND:VALUE` (ref, pull_request, environment).
    let Some(rest) = subject.strip_prefix("repo:") else {
        return;
    };
    let (repository, context) = rest.split_once(':').unwrap_or((rest, ""));
    let (owner, name) = repository.split_once('/').unwrap_or((repository, ""));
    if owner.contains('*') || name.contains('*') || (context.is_empty() && rest.ends_with('*')) {
        if pinned(key, "repository") {
            return;
        }
        let whom = if owner.contains('*') {
            "any GitHub repository of any owner that matches".to_owned()
        } else {
            format!("any repository of `{owner}`")
        };
        report(
            rule::BROAD_SUBJECT,
            Severity::High,
            format!(
                "subject `{subject}` accepts {whom}: a new repository or a fork's workflow gets this identity's access"
            ),
            fix,
        );
        return;
    }
    if context.starts_with('*') && !pinned(key, "ref") && !pinned(key, "environment") {
        report(
            rule::BROAD_SUBJECT,
            Severity::Medium,
            format!(
                "subject `{subject}` accepts any branch, tag, pull request or environment of {repository}: a branch anyone with push access creates runs with this identity's access"
            ),
            fix,
        );
    }
}

fn reused_audience(key: &Key, audiences: &BTreeMap<&str, Vec<&KeyId>>, report: &mut Report<'_>) {
    let Some(audience) = key.federation.audience.as_deref() else {
        return;
    };
    let others: Vec<String> = audiences
        .get(audience)
        .into_iter()
        .flatten()
        .filter(|id| **id != &key.id)
        .map(ToString::to_string)
        .collect();
    if others.is_empty() {
        return;
    }
    report(
        rule::REUSED_AUDIENCE,
        Severity::Medium,
        format!(
            "expects audience `{audience}`, as {} also does{}: a token minted for one is accepted by the other wherever issuer and subject match too",
            others.join(", "),
            if others.len() == 1 { "" } else { " all" }
        ),
        format!(
            "give each identity its own audience: recreate {} without an `audience` (Tailscale then generates a unique one) and update its workload",
            key.id
        ),
    );
}

/// One problem with a configured place rather than a key: the configuration names the
/// credential, not its current key ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaceFinding {
    /// The rule's stable ID (see [`rule`]).
    pub rule: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// The credential's name in the configuration.
    pub credential: String,
    /// The place, as the configuration describes it.
    pub place: String,
    /// What is wrong, in one line.
    pub summary: String,
    /// What to do about it, in one line.
    pub fix: String,
}

/// `could-federate`: managed credentials kept in GitHub Actions secrets. A workflow can
/// present its own OIDC token to a federated identity, so the secret need not exist at all.
/// Webhook secrets are left out: Tailscale signs with them, no workflow presents them.
#[must_use]
pub fn could_federate(config: &crate::config::Config) -> Vec<PlaceFinding> {
    let mut findings = Vec::new();
    for credential in &config.credentials {
        let what = match credential.kind {
            crate::key::KeyKind::AuthKey => "an auth key",
            crate::key::KeyKind::OAuthClientSecret => "an OAuth client secret",
            crate::key::KeyKind::ApiAccessToken => "an API access token",
            _ => continue,
        };
        for sink in &credential.sinks {
            let crate::sink::SinkSpec::GithubActions {
                repository, secret, ..
            } = &sink.spec
            else {
                continue;
            };
            let repo = repository.as_deref().unwrap_or("OWNER/REPO");
            findings.push(PlaceFinding {
                rule: rule::COULD_FEDERATE,
                severity: Severity::Low,
                credential: credential.name.clone(),
                place: crate::sink::describe(&sink.spec),
                summary: format!(
                    "{what} stored as GitHub Actions secret {secret}: the workflows that read it could present their own identity token instead, and then there is no secret to leak"
                ),
                fix: format!(
                    "`tsrotate migrate-to-federated KEY_ID --repo {repo} --repo-dir CHECKOUT --secret {secret}` (KEY_ID: the key `{}` holds now)",
                    credential.name
                ),
            });
        }
    }
    findings
}

fn minted_by_rotation(key: &Key, rotations: &Rotations, report: &mut Report<'_>) {
    let Some(rotation) = key.description.as_deref().and_then(rotation_marker) else {
        return;
    };
    let id = &key.id;
    match rotations.get(rotation) {
        None => report(
            rule::UNKNOWN_ROTATION,
            Severity::Low,
            format!(
                "minted by rotation {rotation}, which this machine has no journal of: run elsewhere, or left behind by a lost state directory"
            ),
            format!(
                "finish it where it ran (`tsrotate resume {rotation}`); if nothing uses this key, revoke it: `tsrotate revoke {id}`"
            ),
        ),
        Some(outcome @ (RotationOutcome::Unfinished | RotationOutcome::Unreadable)) => {
            let state = if *outcome == RotationOutcome::Unreadable {
                "whose journal cannot be read"
            } else {
                "which has not finished"
            };
            report(
                rule::UNFINISHED_ROTATION,
                Severity::Medium,
                format!(
                    "minted by rotation {rotation}, {state}: the old key may still be live and what uses them may hold either"
                ),
                format!(
                    "finish it with `tsrotate resume {rotation}`, or undo it with `tsrotate rollback {rotation}`"
                ),
            );
        }
        Some(RotationOutcome::Done(kept)) if kept == id => {}
        Some(
            outcome @ (RotationOutcome::Done(_)
            | RotationOutcome::RolledBack
            | RotationOutcome::Abandoned),
        ) => {
            let (ended, fix) = match outcome {
                RotationOutcome::Done(kept) => (
                    format!("which finished with key {kept}, yet this key is still live"),
                    format!(
                        "revoke it once you have checked nothing uses it: `tsrotate revoke {id}`"
                    ),
                ),
                RotationOutcome::Abandoned => (
                    "which a person abandoned; this key is still live and may be in use".to_owned(),
                    format!(
                        "rotate it where it is used (`tsrotate rotate {id} --in PATH`), or revoke it if nothing uses it: `tsrotate revoke {id}`"
                    ),
                ),
                _ => (
                    "which was rolled back, yet this key is still live".to_owned(),
                    format!(
                        "revoke it once you have checked nothing uses it: `tsrotate revoke {id}`"
                    ),
                ),
            };
            report(
                rule::STRAY_ROTATION_KEY,
                Severity::Medium,
                format!("minted by rotation {rotation}, {ended}"),
                fix,
            );
        }
    }
}

/// `2026-12-01`.
fn date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::api::{DeviceCapabilities, DeviceCreateCapabilities, KeyCapabilities};

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00:00 UTC);
    const USER: &str = "uAlice1CNTRL";

    fn id(s: &str) -> KeyId {
        s.parse().expect("key ID")
    }

    fn base(key_id: &str, key_type: KeyType) -> Key {
        Key {
            id: id(key_id),
            key_type: Some(key_type),
            description: None,
            created: Some(NOW - Duration::days(1)),
            updated: None,
            expires: None,
            revoked: None,
            expiry_seconds: None,
            invalid: false,
            capabilities: None,
            scopes: Vec::new(),
            tags: Vec::new(),
            user_id: None,
            federation: crate::api::Federation::default(),
        }
    }

    fn auth_key(key_id: &str, reusable: bool, ephemeral: bool, tags: &[&str]) -> Key {
        Key {
            expires: Some(NOW + Duration::days(60)),
            capabilities: Some(KeyCapabilities {
                devices: DeviceCapabilities {
                    create: Some(DeviceCreateCapabilities {
                        reusable,
                        ephemeral,
                        preauthorized: true,
                        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                    }),
                },
            }),
            user_id: Some(if tags.is_empty() {
                USER.to_owned()
            } else {
                String::new()
            }),
            ..base(key_id, KeyType::Auth)
        }
    }

    fn client(key_id: &str, scopes: &[&str]) -> Key {
        Key {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            tags: vec!["tag:ci".to_owned()],
            user_id: Some(USER.to_owned()),
            ..base(key_id, KeyType::Client)
        }
    }

    fn api_token(key_id: &str, user: &str) -> Key {
        Key {
            expires: Some(NOW + Duration::days(60)),
            scopes: vec!["all".to_owned()],
            user_id: Some(user.to_owned()),
            ..base(key_id, KeyType::Api)
        }
    }

    /// The (rule, key ID, severity) of every finding, for exact comparisons.
    fn run(keys: &[Key], rotations: &Rotations) -> Vec<(&'static str, String, Severity)> {
        audit(keys, NOW, &Options::default(), rotations)
            .into_iter()
            .map(|f| (f.rule, f.key_id.to_string(), f.severity))
            .collect()
    }

    fn rules_for(keys: &[Key]) -> Vec<&'static str> {
        run(keys, &Rotations::new())
            .into_iter()
            .map(|(r, ..)| r)
            .collect()
    }

    #[test]
    fn severities_are_ordered_and_parse_both_ways() {
        assert!(Severity::Info < Severity::Low);
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::Medium < Severity::High);
        assert!(Severity::High < Severity::Critical);
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert!("severe".parse::<Severity>().is_err());
    }

    #[test]
    fn a_clean_tailnet_has_no_findings() {
        let keys = [
            auth_key("kTagged1CNTRL", true, false, &["tag:ci"]),
            auth_key("kEphemeral1CNTRL", true, true, &["tag:ci"]),
            client("kNarrow1CNTRL", &["auth_keys", "devices:core"]),
        ];
        assert_eq!(run(&keys, &Rotations::new()), vec![]);
    }

    #[test]
    fn personal_api_tokens_are_reported_but_oauth_access_tokens_are_not() {
        let personal = api_token("kPersonal1CNTRL", USER);
        let mut issued = api_token("kIssued1CNTRL", "");
        // An hour-long OAuth token: would trip `expiring-soon` if it were judged like a key.
        issued.expires = Some(NOW + Duration::hours(1));
        assert_eq!(Kind::of(&personal), Kind::ApiToken);
        assert_eq!(Kind::of(&issued), Kind::OauthAccessToken);
        assert_eq!(
            run(&[personal, issued], &Rotations::new()),
            vec![(
                rule::PERSONAL_API_TOKEN,
                "kPersonal1CNTRL".to_owned(),
                Severity::Medium
            )]
        );
    }

    #[test]
    fn keys_expiring_within_the_window_are_reported() {
        let mut soon = auth_key("kSoon1CNTRL", false, false, &["tag:ci"]);
        soon.expires = Some(NOW + Duration::days(3));
        let mut edge = auth_key("kEdge1CNTRL", false, false, &["tag:ci"]);
        edge.expires = Some(NOW + Duration::days(14));
        let mut later = auth_key("kLater1CNTRL", false, false, &["tag:ci"]);
        later.expires = Some(NOW + Duration::days(14) + Duration::seconds(1));
        let never = client("kNever1CNTRL", &["auth_keys"]);
        let findings = audit(
            &[soon, edge, later, never],
            NOW,
            &Options::default(),
            &Rotations::new(),
        );
        let ids: Vec<&str> = findings.iter().map(|f| f.key_id.as_str()).collect();
        assert_eq!(ids, ["kEdge1CNTRL", "kSoon1CNTRL"]);
        assert!(findings.iter().all(|f| f.rule == rule::EXPIRING_SOON));
        let soon = findings
            .iter()
            .find(|f| f.key_id.as_str() == "kSoon1CNTRL")
            .expect("soon");
        assert!(soon.summary.contains("in 3 days (2026-12-04)"), "{soon:?}");
        assert!(soon.fix.contains("tsrotate rotate kSoon1CNTRL"));

        // A wider window catches the later one too.
        let mut later = auth_key("kLater1CNTRL", false, false, &["tag:ci"]);
        later.expires = Some(NOW + Duration::days(20));
        let wide = Options {
            expiring_within: Duration::days(30),
            ..Options::default()
        };
        assert_eq!(audit(&[later], NOW, &wide, &Rotations::new()).len(), 1);
    }

    #[test]
    fn expired_and_revoked_keys_are_never_reported() {
        let mut expired = auth_key("kExpired1CNTRL", true, false, &[]);
        expired.expires = Some(NOW - Duration::seconds(1));
        let mut revoked = client("kRevoked1CNTRL", &["all"]);
        revoked.revoked = Some(NOW - Duration::days(1));
        let mut invalid = api_token("kInvalid1CNTRL", USER);
        invalid.invalid = true;
        assert_eq!(run(&[expired, revoked, invalid], &Rotations::new()), vec![]);
    }

    #[test]
    fn reusable_untagged_lasting_auth_keys_are_high() {
        let bad = auth_key("kBad1CNTRL", true, false, &[]);
        assert_eq!(
            run(&[bad], &Rotations::new()),
            vec![(
                rule::REUSABLE_UNTAGGED_AUTH_KEY,
                "kBad1CNTRL".to_owned(),
                Severity::High
            )],
            "and not also user-owned-auth-key: one fix, one finding"
        );
        // Each of tagged, ephemeral, single-use takes it out of this rule.
        assert!(
            !rules_for(&[auth_key("kT1CNTRL", true, false, &["tag:ci"])])
                .contains(&rule::REUSABLE_UNTAGGED_AUTH_KEY)
        );
        assert!(
            !rules_for(&[auth_key("kE1CNTRL", true, true, &[])])
                .contains(&rule::REUSABLE_UNTAGGED_AUTH_KEY)
        );
        assert!(
            !rules_for(&[auth_key("kS1CNTRL", false, false, &[])])
                .contains(&rule::REUSABLE_UNTAGGED_AUTH_KEY)
        );
        // No capabilities at all means single-use and untagged.
        let mut bare = auth_key("kBare1CNTRL", false, false, &[]);
        bare.capabilities = None;
        assert_eq!(rules_for(&[bare]), vec![rule::USER_OWNED_AUTH_KEY]);
    }

    #[test]
    fn untagged_user_owned_auth_keys_are_low() {
        let single = auth_key("kSingle1CNTRL", false, false, &[]);
        let ephemeral = auth_key("kEph1CNTRL", true, true, &[]);
        let tagged = auth_key("kTagged1CNTRL", false, false, &["tag:ci"]);
        let mut user_tagged = auth_key("kUserTagged1CNTRL", false, false, &["tag:ci"]);
        user_tagged.user_id = Some(USER.to_owned());
        let findings = audit(
            &[single, ephemeral, tagged, user_tagged],
            NOW,
            &Options::default(),
            &Rotations::new(),
        );
        let got: Vec<(&str, &str, Severity)> = findings
            .iter()
            .map(|f| (f.rule, f.key_id.as_str(), f.severity))
            .collect();
        assert_eq!(
            got,
            [
                (rule::USER_OWNED_AUTH_KEY, "kEph1CNTRL", Severity::Low),
                (rule::USER_OWNED_AUTH_KEY, "kSingle1CNTRL", Severity::Low),
            ]
        );
        assert!(findings[0].summary.contains(USER));
    }

    #[test]
    fn keys_older_than_the_maximum_age_are_reported() {
        let mut old = client("kOld1CNTRL", &["auth_keys"]);
        old.created = Some(NOW - Duration::days(181));
        let mut edge = client("kEdge1CNTRL", &["auth_keys"]);
        edge.created = Some(NOW - Duration::days(180));
        let mut unknown_age = client("kAgeless1CNTRL", &["auth_keys"]);
        unknown_age.created = None;
        let findings = audit(
            &[old, edge, unknown_age],
            NOW,
            &Options::default(),
            &Rotations::new(),
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, rule::OLD_KEY);
        assert_eq!(findings[0].key_id.as_str(), "kOld1CNTRL");
        assert!(findings[0].summary.contains("181 days ago"));

        // A tighter maximum catches auth keys too.
        let mut key = auth_key("kMonth1CNTRL", false, false, &["tag:ci"]);
        key.created = Some(NOW - Duration::days(31));
        let tight = Options {
            max_age: Duration::days(30),
            ..Options::default()
        };
        let findings = audit(&[key], NOW, &tight, &Rotations::new());
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0]
                .summary
                .contains("more than the 30 days allowed")
        );
    }

    #[test]
    fn broad_scopes_follow_the_broadest_scope() {
        let keys = [
            client("kAll1CNTRL", &["all"]),
            client("kAllAndMore1CNTRL", &["all", "all:read", "policy_file"]),
            client("kMixed1CNTRL", &["auth_keys", "policy_file", "dns:read"]),
            client("kLegacyMixed1CNTRL", &["devices", "acl"]),
            client("kUnknownWrite1CNTRL", &["oauth_keys", "brand_new_scope"]),
            client("kAllRead1CNTRL", &["all:read"]),
            client(
                "kOperator1CNTRL",
                &["auth_keys", "devices:core", "services"],
            ),
            client("kGitops1CNTRL", &["policy_file", "devices:core:read"]),
            client("kReader1CNTRL", &["auth_keys:read", "users:read"]),
            Key {
                scopes: vec!["all".to_owned()],
                ..base("kFederated1CNTRL", KeyType::Federated)
            },
        ];
        assert_eq!(
            run(&keys, &Rotations::new()),
            vec![
                (rule::BROAD_SCOPES, "kAll1CNTRL".to_owned(), Severity::High),
                (
                    rule::BROAD_SCOPES,
                    "kAllAndMore1CNTRL".to_owned(),
                    Severity::High
                ),
                (
                    rule::BROAD_SCOPES,
                    "kFederated1CNTRL".to_owned(),
                    Severity::High
                ),
                (
                    rule::BROAD_SCOPES,
                    "kLegacyMixed1CNTRL".to_owned(),
                    Severity::Medium
                ),
                (
                    rule::BROAD_SCOPES,
                    "kMixed1CNTRL".to_owned(),
                    Severity::Medium
                ),
                (
                    rule::BROAD_SCOPES,
                    "kUnknownWrite1CNTRL".to_owned(),
                    Severity::Medium
                ),
                (
                    rule::BROAD_SCOPES,
                    "kAllRead1CNTRL".to_owned(),
                    Severity::Low
                ),
            ]
        );
        let mixed = audit(&keys[2..3], NOW, &Options::default(), &Rotations::new());
        assert!(
            mixed[0].summary.contains("(auth_keys)") && mixed[0].summary.contains("(policy_file)"),
            "{mixed:?}"
        );
    }

    #[test]
    fn personal_tokens_are_not_judged_by_their_all_scope() {
        // They always carry `all`; `personal-api-token` covers them.
        assert_eq!(
            rules_for(&[api_token("kTok1CNTRL", USER)]),
            vec![rule::PERSONAL_API_TOKEN]
        );
    }

    #[test]
    fn rotation_markers_are_found_only_in_their_exact_shape() {
        let id = "r20261128000000abcdef";
        assert_eq!(rotation_marker(&format!("tsrotate {id}")), Some(id));
        assert_eq!(
            rotation_marker(&format!("ci runners tsrotate {id}")),
            Some(id)
        );
        assert_eq!(
            rotation_marker(&format!("tsrotate {id} tsrotate r20261201000000zzzzzz")),
            Some("r20261201000000zzzzzz")
        );
        for not in [
            "tsrotate rollout",
            "tsrotate r2026",
            "mytsrotate r20261128000000abcdef",
            "tsrotate r20261128000000ABCDEF",
            "tsrotate 20261128000000abcdef",
            "ci runners",
            "",
        ] {
            assert_eq!(rotation_marker(not), None, "{not}");
        }
        // What the engine writes is what we find.
        let written = crate::rotate::mint_description(Some("web servers"), id);
        assert_eq!(rotation_marker(&written), Some(id));
    }

    #[test]
    fn keys_minted_by_rotations_are_judged_by_their_journal() {
        let minted = |key_id: &str, rotation: &str| Key {
            description: Some(format!("web tsrotate {rotation}")),
            ..auth_key(key_id, false, false, &["tag:ci"])
        };
        let keys = [
            minted("kUnfinished1CNTRL", "r20261101000000aaaaaa"),
            minted("kUnreadable1CNTRL", "r20261101000000bbbbbb"),
            minted("kKept1CNTRL", "r20261101000000cccccc"),
            minted("kLeftover1CNTRL", "r20261101000000cccccc"),
            minted("kRolledBack1CNTRL", "r20261101000000dddddd"),
            minted("kStranger1CNTRL", "r20261101000000eeeeee"),
            minted("kAbandoned1CNTRL", "r20261101000000ffffff"),
            auth_key("kPlain1CNTRL", false, false, &["tag:ci"]),
        ];
        let mut rotations = Rotations::new();
        rotations.insert("r20261101000000aaaaaa", RotationOutcome::Unfinished);
        rotations.insert("r20261101000000bbbbbb", RotationOutcome::Unreadable);
        rotations.insert(
            "r20261101000000cccccc",
            RotationOutcome::Done(id("kKept1CNTRL")),
        );
        rotations.insert("r20261101000000dddddd", RotationOutcome::RolledBack);
        rotations.insert("r20261101000000ffffff", RotationOutcome::Abandoned);
        assert_eq!(
            run(&keys, &rotations),
            vec![
                (
                    rule::STRAY_ROTATION_KEY,
                    "kAbandoned1CNTRL".to_owned(),
                    Severity::Medium
                ),
                (
                    rule::STRAY_ROTATION_KEY,
                    "kLeftover1CNTRL".to_owned(),
                    Severity::Medium
                ),
                (
                    rule::STRAY_ROTATION_KEY,
                    "kRolledBack1CNTRL".to_owned(),
                    Severity::Medium
                ),
                (
                    rule::UNFINISHED_ROTATION,
                    "kUnfinished1CNTRL".to_owned(),
                    Severity::Medium
                ),
                (
                    rule::UNFINISHED_ROTATION,
                    "kUnreadable1CNTRL".to_owned(),
                    Severity::Medium
                ),
                (
                    rule::UNKNOWN_ROTATION,
                    "kStranger1CNTRL".to_owned(),
                    Severity::Low
                ),
            ]
        );
        let findings = audit(&keys, NOW, &Options::default(), &rotations);
        let unfinished = findings
            .iter()
            .find(|f| f.key_id.as_str() == "kUnfinished1CNTRL")
            .expect("unfinished");
        assert!(
            unfinished
                .fix
                .contains("tsrotate resume r20261101000000aaaaaa")
        );
    }

    #[test]
    fn every_finding_has_a_one_line_summary_and_fix_naming_the_key_or_rotation() {
        let mut minted = auth_key("kMinted1CNTRL", true, false, &[]);
        minted.description = Some("tsrotate r20261101000000aaaaaa".to_owned());
        minted.expires = Some(NOW + Duration::hours(5));
        minted.created = Some(NOW - Duration::days(400));
        let keys = [
            minted,
            api_token("kTok1CNTRL", USER),
            client("kAll1CNTRL", &["all"]),
            auth_key("kSingle1CNTRL", false, false, &[]),
        ];
        let findings = audit(&keys, NOW, &Options::default(), &Rotations::new());
        let rules: std::collections::BTreeSet<&str> = findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules.len(), 7, "{rules:?}");
        for f in &findings {
            assert!(rule::ALL.contains(&f.rule), "{f:?}");
            for text in [&f.summary, &f.fix] {
                assert!(!text.is_empty() && !text.contains('\n'), "{f:?}");
            }
            assert!(
                f.fix.contains(f.key_id.as_str()) || f.fix.contains("r20261101000000aaaaaa"),
                "{f:?}"
            );
        }
        // Highest first.
        assert!(findings.windows(2).all(|w| w[0].severity >= w[1].severity));
        let hours = findings
            .iter()
            .find(|f| f.rule == rule::EXPIRING_SOON)
            .expect("expiring");
        assert!(hours.summary.contains("in 5 hours"), "{hours:?}");
    }

    /// Real journals (unfinished, done) are covered end to end by the CLI's audit tests, which
    /// run real rotations; here, what needs no journal format: absence and damage.
    #[test]
    fn rotations_are_read_from_the_state_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            Rotations::read(dir.path(), &journal::JournalKey::from_bytes([7; 32])).expect("read"),
            Rotations::new()
        );
        let journals = Journal::dir(dir.path());
        std::fs::create_dir_all(&journals).expect("mkdir");
        #[allow(
            clippy::disallowed_methods,
            reason = "a test fixture, not a consumer's file"
        )]
        {
            std::fs::write(
                Journal::path_of(dir.path(), "r20261101000000dddddd"),
                b"not json\nnot json either\n",
            )
            .expect("write");
            std::fs::write(journals.join("notes.txt"), b"not a journal").expect("write");
        }
        let rotations =
            Rotations::read(dir.path(), &journal::JournalKey::from_bytes([7; 32])).expect("read");
        assert_eq!(
            rotations.get("r20261101000000dddddd"),
            Some(&RotationOutcome::Unreadable)
        );
        assert_eq!(rotations.0.len(), 1, "{rotations:?}");
    }

    fn federated(key_id: &str, subject: &str, audience: &str, claims: &[(&str, &str)]) -> Key {
        Key {
            scopes: vec!["auth_keys".to_owned()],
            tags: vec!["tag:ci".to_owned()],
            federation: crate::api::Federation {
                issuer: Some("https://token.actions.githubusercontent.com".to_owned()),
                subject: Some(subject.to_owned()),
                audience: Some(audience.to_owned()),
                custom_claim_rules: Some(
                    claims
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
            },
            ..base(key_id, KeyType::Federated)
        }
    }

    #[test]
    fn broad_subjects_are_reported_by_how_much_they_accept() {
        let keys = [
            federated("kAny1CNTRL", "*", "a1", &[]),
            federated("kOrg1CNTRL", "repo:acme/*", "a2", &[]),
            federated(
                "kOrgRef1CNTRL",
                "repo:acme/*:ref:refs/heads/main",
                "a3",
                &[],
            ),
            federated("kOwner1CNTRL", "repo:*/infra:*", "a4", &[]),
            federated("kAnyRef1CNTRL", "repo:acme/infra:*", "a5", &[]),
            // Narrow enough: one branch, one environment, or pinned by a claim rule.
            federated(
                "kMain1CNTRL",
                "repo:acme/infra:ref:refs/heads/main",
                "a6",
                &[],
            ),
            federated("kEnv1CNTRL", "repo:acme/infra:environment:prod", "a7", &[]),
            federated(
                "kPinnedRef1CNTRL",
                "repo:acme/infra:*",
                "a8",
                &[("ref", "refs/heads/main")],
            ),
            federated(
                "kPinnedRepo1CNTRL",
                "*",
                "a9",
                &[("repository", "acme/infra")],
            ),
            federated(
                "kK8s1CNTRL",
                "system:serviceaccount:ops:tsrotate",
                "a10",
                &[],
            ),
        ];
        let found: Vec<_> = run(&keys, &Rotations::new())
            .into_iter()
            .filter(|(rule, ..)| *rule == rule::BROAD_SUBJECT)
            .collect();
        assert_eq!(
            found,
            vec![
                (rule::BROAD_SUBJECT, "kAny1CNTRL".to_owned(), Severity::High),
                (rule::BROAD_SUBJECT, "kOrg1CNTRL".to_owned(), Severity::High),
                (
                    rule::BROAD_SUBJECT,
                    "kOrgRef1CNTRL".to_owned(),
                    Severity::High
                ),
                (
                    rule::BROAD_SUBJECT,
                    "kOwner1CNTRL".to_owned(),
                    Severity::High
                ),
                (
                    rule::BROAD_SUBJECT,
                    "kAnyRef1CNTRL".to_owned(),
                    Severity::Medium
                ),
            ]
        );
        let any_ref = audit(&keys, NOW, &Options::default(), &Rotations::new())
            .into_iter()
            .find(|f| f.key_id.as_str() == "kAnyRef1CNTRL")
            .unwrap();
        assert!(
            any_ref.summary.contains("any branch"),
            "{}",
            any_ref.summary
        );
        assert!(!any_ref.fix.contains('\n') && any_ref.fix.contains("repo:OWNER/REPO"));
    }

    #[test]
    fn an_audience_shared_by_live_identities_is_reported_on_each() {
        let mut dead = federated(
            "kDead1CNTRL",
            "repo:acme/c:ref:refs/heads/main",
            "shared-2",
            &[],
        );
        dead.invalid = true;
        let keys = [
            federated(
                "kOne1CNTRL",
                "repo:acme/a:ref:refs/heads/main",
                "shared",
                &[],
            ),
            federated(
                "kTwo1CNTRL",
                "repo:acme/b:ref:refs/heads/main",
                "shared",
                &[],
            ),
            federated(
                "kOwn1CNTRL",
                "repo:acme/c:ref:refs/heads/main",
                "shared-2",
                &[],
            ),
            dead,
        ];
        let findings: Vec<Finding> = audit(&keys, NOW, &Options::default(), &Rotations::new())
            .into_iter()
            .filter(|f| f.rule == rule::REUSED_AUDIENCE)
            .collect();
        let ids: Vec<&str> = findings.iter().map(|f| f.key_id.as_str()).collect();
        assert_eq!(
            ids,
            ["kOne1CNTRL", "kTwo1CNTRL"],
            "a dead identity shares nothing"
        );
        assert_eq!(findings[0].severity, Severity::Medium);
        assert!(
            findings[0].summary.contains("kTwo1CNTRL"),
            "{}",
            findings[0].summary
        );
        assert!(findings[0].fix.contains("without an `audience`"));
    }

    #[test]
    fn a_federated_identity_with_all_scopes_is_broad_scopes_high() {
        let mut key = federated(
            "kAllFed1CNTRL",
            "repo:acme/infra:ref:refs/heads/main",
            "a",
            &[],
        );
        key.scopes = vec!["all".to_owned()];
        let findings = audit(&[key], NOW, &Options::default(), &Rotations::new());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(
            (findings[0].rule, findings[0].severity, findings[0].kind),
            (rule::BROAD_SCOPES, Severity::High, Kind::FederatedIdentity)
        );
        assert!(findings[0].fix.contains("only the scopes"));
    }

    #[test]
    fn credentials_kept_in_github_actions_secrets_could_federate() {
        let config = crate::config::Config::parse(
            r#"
[[credential]]
name = "ci-runners"
kind = "auth-key"
[[credential.sink]]
type = "github-actions"
repository = "acme/deploy"
secret = "TS_AUTHKEY"
[[credential.sink]]
type = "file"
path = "/etc/tailscale/authkey"

[[credential]]
name = "alerts"
kind = "webhook-secret"
webhook_endpoint_id = "e1"
[[credential.sink]]
type = "github-actions"
repository = "acme/deploy"
secret = "TS_WEBHOOK"
"#,
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let findings = could_federate(&config);
        assert_eq!(findings.len(), 1, "{findings:?}");
        let f = &findings[0];
        assert_eq!(
            (f.rule, f.severity, f.credential.as_str()),
            (rule::COULD_FEDERATE, Severity::Low, "ci-runners")
        );
        assert_eq!(f.place, "github-actions acme/deploy secret TS_AUTHKEY");
        assert!(
            f.fix
                .starts_with("`tsrotate migrate-to-federated KEY_ID --repo acme/deploy"),
            "{}",
            f.fix
        );
    }
}
