//! Planning a rotation: everything is read, nothing is changed.

use std::path::PathBuf;

use rand::Rng;
use time::OffsetDateTime;

use crate::api::{self, Key, KeyType};
use crate::journal::{
    AuthKeyTemplate, ClientTemplate, OldKey, SinkPlan, Started, Template, TokenTemplate,
};
use crate::key::{KeyId, KeyKind, KeyRef};
use crate::sink::Expect;
use crate::sink::file::{self, Discovery, FileMatch};

/// The longest auth key lifetime Tailscale allows: 90 days.
pub const MAX_AUTH_KEY_EXPIRY_SECONDS: i64 = 90 * 24 * 3600;

/// What the API says of a key right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// It works.
    Live,
    /// It was revoked (deleted).
    Revoked,
    /// It passed its expiry.
    Expired,
    /// The API calls it invalid without saying why (a used single-use key, for one).
    Invalid,
    /// The API does not know it (deleted long ago, another tailnet, or never existed).
    NotFound,
}

impl KeyStatus {
    /// Whether the key still works.
    #[must_use]
    pub fn is_live(self) -> bool {
        self == Self::Live
    }

    /// From a key object.
    #[must_use]
    pub fn of(key: &Key, now: OffsetDateTime) -> Self {
        if key.revoked.is_some() {
            Self::Revoked
        } else if key.expires.is_some_and(|e| e <= now) {
            Self::Expired
        } else if key.invalid {
            Self::Invalid
        } else {
            Self::Live
        }
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Live => "live",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Invalid => "invalid",
            Self::NotFound => "not found",
        })
    }
}

/// Look a key up: its status and, when the API answered, its metadata. Expiry is judged by
/// the control plane's clock as its answer gives it (the runner's may be off).
pub async fn lookup(
    client: &api::Client,
    id: &KeyId,
) -> Result<(KeyStatus, Option<Key>), api::Error> {
    match client.get_key(id).await {
        Ok(key) => Ok((KeyStatus::of(&key, client.server_now()), Some(key))),
        Err(e) if e.is_not_found() => Ok((KeyStatus::NotFound, None)),
        Err(e) => Err(e),
    }
}

/// Properties of the new key given on the command line, overriding the old key's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--reusable`.
    pub reusable: Option<bool>,
    /// `--ephemeral`.
    pub ephemeral: Option<bool>,
    /// `--preauthorized`.
    pub preauthorized: Option<bool>,
    /// `--tags`.
    pub tags: Option<Vec<String>>,
    /// `--expiry`, in seconds.
    pub expiry_seconds: Option<i64>,
    /// The description of new keys (from a configuration template).
    pub description: Option<String>,
    /// OAuth client scopes (`--scopes`).
    pub scopes: Option<Vec<String>>,
}

impl Overrides {
    /// These overrides, with the gaps filled from a configuration template.
    pub fn or_template(self, template: &crate::config::TemplateConfig) -> Result<Self, String> {
        let expiry = template
            .expiry
            .as_deref()
            .map(crate::config::parse_duration)
            .transpose()?;
        Ok(Self {
            reusable: self.reusable.or(template.reusable),
            ephemeral: self.ephemeral.or(template.ephemeral),
            preauthorized: self.preauthorized.or(template.preauthorized),
            tags: self.tags.or_else(|| template.tags.clone()),
            expiry_seconds: self.expiry_seconds.or(expiry),
            description: self.description.or_else(|| template.description.clone()),
            scopes: self.scopes.or_else(|| template.scopes.clone()),
        })
    }
}

/// What the user asked for.
#[derive(Debug)]
pub struct Request {
    /// The key to replace.
    pub key: KeyRef,
    /// Files and folders to search.
    pub roots: Vec<PathBuf>,
    /// Configured places, as read just now (`rotate --config`).
    pub configured: Vec<super::places::Reading>,
    /// Properties of the new key.
    pub overrides: Overrides,
    /// Revoke the old key before anything else.
    pub revoke_first: bool,
    /// A command that must pass with the new key before the old one is revoked.
    pub verify_cmd: Option<String>,
    /// Who is asking (the OS user), for the journal and audit log.
    pub user: String,
    /// The managed credential being rotated, by its configuration name.
    pub credential: Option<String>,
    /// The kind, when the configuration says (a webhook's endpoint ID is not a key ID the
    /// keys API knows).
    pub kind_hint: Option<KeyKind>,
    /// `migrate-to-oauth`: replace an API access token with a new OAuth client like this.
    pub migrate_to: Option<MigrateTo>,
    /// Webhook secrets: the webhook's endpoint ID (the secret's key ID is not it).
    pub webhook_endpoint: Option<String>,
    /// The old key as [`lookup`] found it moments ago (`rotate --due` observed it under the
    /// credential's lock); `None` makes the plan ask the API.
    pub looked_up: Option<(KeyStatus, Option<Key>)>,
    /// Go on when some files that hold (or may hold) the key cannot be updated (binary or
    /// unreadable ones); they are named in the plan and the journal. Without it, such a
    /// rotation is refused ([`Error::CannotUpdate`]) before anything changes.
    pub skip_unwritable: bool,
}

impl Request {
    /// The values of keys this request holds: the old key when given by value, and what the
    /// configured places held when read. Children's output is redacted of them too: the old
    /// key is live while verification runs.
    #[must_use]
    pub fn known_values(&self) -> Vec<crate::key::Secret> {
        let mut values: Vec<crate::key::Secret> = self
            .key
            .credential()
            .map(|c| c.secret().clone())
            .into_iter()
            .collect();
        for reading in &self.configured {
            if let Ok(snapshot) = &reading.snapshot
                && let Some(value) = &snapshot.value
                && !values
                    .iter()
                    .any(|v| v.fingerprint() == value.fingerprint())
            {
                values.push(value.clone());
            }
        }
        values
    }
}

/// The OAuth client an API access token's consumers move to.
#[derive(Debug, Clone)]
pub struct MigrateTo {
    /// Scopes of the new client: only what the consumers need.
    pub scopes: Vec<String>,
    /// Tags the new client may assign.
    pub tags: Vec<String>,
    /// Its description.
    pub description: Option<String>,
}

/// A rotation, planned and ready to start.
#[derive(Debug)]
pub struct Plan {
    /// What the journal's first record will say.
    pub started: Started,
    /// The old key's status now.
    pub status: KeyStatus,
    /// Text files that hold the old key and will be rewritten.
    pub files: Vec<FileMatch>,
    /// Everything else the search found: binary files, links not followed, unreadable files.
    pub discovery: Discovery,
    /// Things the person should know before saying yes.
    pub warnings: Vec<String>,
    /// What each configured place looked like, by sink index, for check-and-set.
    pub planned_versions: std::collections::HashMap<usize, Expect>,
}

/// The files a rotation would leave holding the old key: binary files that hold it, and files
/// that could not be read (they may hold it). A path that does not exist (a dangling link)
/// holds nothing.
/// What a search of an unfinished rotation's folders finds that its plan did not.
#[derive(Debug, Default)]
pub struct FoundSince {
    /// Places, in words, that hold the key but were not in the plan that was confirmed, or
    /// that the rotation cannot update and the plan did not accept (`not_updated`).
    pub unplanned: Vec<String>,
    /// Roots that lead elsewhere than when the rotation began (a folder swapped for a link):
    /// not searched again.
    pub redirected_roots: Vec<PathBuf>,
}

/// The files configured places live in, by every name that leads to them: the path as
/// configured, and its canonical form (folder resolved as the plan pins it, and the whole
/// path resolved). A file the `--in` search finds among them belongs to the configured place
/// and is planned once, as that place: planned twice, the second write found the file
/// changed by the first and stopped the rotation ("changed by someone else").
fn configured_files<'a>(
    places: impl Iterator<Item = (&'a crate::sink::SinkSpec, Option<&'a std::path::Path>)>,
) -> std::collections::BTreeSet<PathBuf> {
    let mut names = std::collections::BTreeSet::new();
    for (spec, resolved) in places {
        let Some(path) = crate::sink::file_path(spec) else {
            continue;
        };
        let resolved = resolved
            .map(std::path::Path::to_path_buf)
            .or_else(|| crate::fs::resolve_folder(path).ok());
        for name in std::iter::once(path.to_path_buf()).chain(resolved) {
            if let Ok(canonical) = std::fs::canonicalize(&name) {
                names.insert(canonical);
            }
            names.insert(name);
        }
    }
    names
}

/// Search an unfinished rotation's `--in` folders again, as its plan did.
///
/// A resume writes only what the confirmed plan named: a file that gained the key since
/// (anyone who can write into the tree could have planted one to receive the new key) and a
/// place the rotation cannot update that the plan did not accept (a link or hard link out of
/// the tree) must stop it before anything more happens, with the old key still live. Files
/// the plan holds, found by the search or configured (by their path and the path the plan
/// resolved), are not reported.
///
/// # Errors
///
/// When the folders cannot be searched.
pub fn found_since(state: &super::State) -> Result<FoundSince, file::Error> {
    let mut found = FoundSince::default();
    let mut known = configured_files(state.sinks.iter().filter_map(|s| match s {
        SinkPlan::Configured { spec, resolved, .. } => Some((spec, resolved.as_deref())),
        SinkPlan::File { .. } => None,
    }));
    known.extend(state.sinks.iter().filter_map(|s| match s {
        SinkPlan::File { path, .. } => Some(path.clone()),
        SinkPlan::Configured { .. } => None,
    }));
    let mut roots = Vec::new();
    for (i, root) in state.started.roots.iter().enumerate() {
        if !root.exists() {
            continue;
        }
        // A root that resolves elsewhere than at the plan (it, or a folder above it, swapped
        // for a link) is not searched again: what it leads to now is outside the tree the
        // rotation was asked about.
        let planned = state.started.resolved_roots.get(i);
        if planned.is_some_and(|p| std::fs::canonicalize(root).ok().as_ref() != Some(p)) {
            found.redirected_roots.push(root.clone());
            continue;
        }
        roots.push(root.clone());
    }
    if roots.is_empty() {
        return Ok(found);
    }
    let discovery = file::locate(&roots, &state.known_ids())?;
    let accepted: std::collections::BTreeSet<&str> = state
        .started
        .not_updated
        .iter()
        .map(String::as_str)
        .collect();
    found.unplanned = discovery
        .matches
        .iter()
        .filter(|m| !known.contains(&m.path))
        .map(|m| {
            format!(
                "{} (holds the key but was not in the plan that was confirmed)",
                m.display_path.display()
            )
        })
        .collect();
    found.unplanned.extend(
        not_updatable(&discovery)
            .into_iter()
            .filter(|place| !accepted.contains(place.as_str())),
    );
    Ok(found)
}

/// The places a search found that a rotation cannot update, in the words the plan shows and
/// the journal records (`not_updated`): `resume` compares a new search with them.
#[must_use]
pub fn not_updatable(discovery: &Discovery) -> Vec<String> {
    let binary = discovery.binary.iter().map(|m| {
        format!(
            "{} (a binary file; tsrotate does not edit those)",
            m.display_path.display()
        )
    });
    let problems = discovery.problems.iter().filter_map(|p| match &p.kind {
        file::ProblemKind::Unreadable { error_kind, .. } if error_kind == "NotFound" => None,
        file::ProblemKind::Unreadable { message, .. } => Some(format!(
            "{} (could not be read: {message})",
            p.path.display()
        )),
        file::ProblemKind::LinkOutsideRoots { target } => Some(format!(
            "{} (a link to `{}`, outside the folders searched, which holds the key: tsrotate \
             does not write outside them)",
            p.path.display(),
            target.display()
        )),
        file::ProblemKind::HardLinkedElsewhere { links } => Some(format!(
            "{} (has {links} hard links, some outside the folders searched: tsrotate replaces \
             the file, so those names would keep the old key)",
            p.path.display()
        )),
        file::ProblemKind::CredentialTooLong { .. } => Some(format!(
            "{} (holds a value of the key too long to replace safely)",
            p.path.display()
        )),
    });
    binary.chain(problems).collect()
}

/// An error and its causes on one line (the OS's reason is in the source).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Why a rotation cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API failed.
    #[error("could not look up key {key_id}: {source}")]
    Api {
        /// The key.
        key_id: KeyId,
        /// What the API said.
        #[source]
        source: api::Error,
    },
    /// The API failed while listing the tailnet's webhooks (to find a secret's endpoint).
    #[error("cannot list the tailnet's webhooks to find this secret's: {source}")]
    Webhooks {
        /// What the API said.
        #[source]
        source: api::Error,
    },
    /// Searching the files failed.
    #[error(transparent)]
    Files(#[from] file::Error),
    /// The old key's properties are unknown and not given.
    #[error("key {key_id} is {status} and its properties are unknown; give them with {}", missing.join(", "))]
    UnknownProperties {
        /// The key.
        key_id: KeyId,
        /// Its status.
        status: KeyStatus,
        /// The flags to give.
        missing: Vec<&'static str>,
    },
    /// No file holds the key.
    #[error("no file under {} holds key {key_id}", roots.iter().map(|r| format!("`{}`", r.display())).collect::<Vec<_>>().join(", "))]
    NotFoundInFiles {
        /// The key.
        key_id: KeyId,
        /// Where we looked.
        roots: Vec<PathBuf>,
    },
    /// This kind of credential is not rotated this way.
    #[error("{kind} {key_id} cannot be rotated as an auth key")]
    UnsupportedKind {
        /// The key.
        key_id: KeyId,
        /// Its kind.
        kind: String,
    },
    /// An override is out of range.
    #[error("{0}")]
    InvalidOverride(String),
    /// Files that hold the key (binary ones) or may hold it (unreadable ones) cannot be
    /// updated, and the request does not say to go on without them; nothing was changed.
    #[error(
        "{} place(s) that hold or may hold key {key_id} cannot be updated: {}; nothing was changed",
        places.len(), places.join("; ")
    )]
    CannotUpdate {
        /// The key.
        key_id: KeyId,
        /// Each place, with why.
        places: Vec<String>,
    },
    /// Configured places cannot be written as they stand (a missing folder, a field that
    /// cannot be added, a folder that takes no new files); nothing was changed.
    #[error(
        "{} place(s) cannot be written: {}; nothing was changed",
        places.len(), places.join("; ")
    )]
    Unwritable {
        /// Each place, with why.
        places: Vec<String>,
    },
    /// A configured place could not be read; nothing was changed.
    #[error("{0}")]
    Unreadable(String),
    /// The configuration calls the credential one kind and the API says the key is another.
    #[error(
        "the configuration says this credential is {configured}, but the API says key {key_id} is {actual}"
    )]
    KindMismatch {
        /// The key.
        key_id: KeyId,
        /// What the configuration says.
        configured: KeyKind,
        /// What the API says.
        actual: KeyKind,
    },
}

/// A new rotation ID: `r`, the UTC time to the second, and six random characters. Sorting
/// IDs sorts rotations by start time.
#[must_use]
pub fn new_rotation_id(now: OffsetDateTime) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "r{:04}{:02}{:02}{:02}{:02}{:02}{suffix}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Plan a rotation: look the key up, search the files, settle the replacement's properties
/// (per kind: a twin auth key, a new OAuth client, a token a person makes, a webhook
/// secret). `known` is the key's last known metadata from earlier journals, used when the
/// API no longer answers for it.
#[allow(
    clippy::too_many_lines,
    reason = "one linear sequence of checks, each commented"
)]
pub async fn plan_rotation(
    client: &api::Client,
    request: Request,
    known: Option<Key>,
    now: OffsetDateTime,
) -> Result<Plan, Error> {
    let key_id = request.key.key_id().clone();
    let given_kind = request
        .kind_hint
        .clone()
        .or_else(|| request.key.credential().map(|c| c.kind().clone()));
    // Webhook secrets are not keys of the keys API: nothing to look up there.
    let (status, metadata) = if given_kind == Some(KeyKind::Webhook) {
        (KeyStatus::Live, None)
    } else if let Some(looked_up) = request.looked_up.clone() {
        looked_up
    } else {
        lookup(client, &key_id).await.map_err(|source| Error::Api {
            key_id: key_id.clone(),
            source,
        })?
    };
    let kind = match (
        &request.key,
        metadata.as_ref().and_then(|k| k.key_type.clone()),
    ) {
        (KeyRef::Credential(c), _) => c.kind().clone(),
        (KeyRef::Id(_), Some(KeyType::Auth) | None) => KeyKind::AuthKey,
        (KeyRef::Id(_), Some(KeyType::Client)) => KeyKind::OAuthClientSecret,
        (KeyRef::Id(_), Some(KeyType::Api)) => KeyKind::ApiAccessToken,
        (KeyRef::Id(_), Some(other)) => KeyKind::Other(format!("{other:?}").to_lowercase()),
    };
    // A wrong kind in the configuration would write the wrong kind of secret over the
    // consumers' credential and then revoke the one they used: refuse instead.
    let api_kind = match metadata.as_ref().and_then(|k| k.key_type.clone()) {
        Some(KeyType::Auth) => Some(KeyKind::AuthKey),
        Some(KeyType::Client) => Some(KeyKind::OAuthClientSecret),
        Some(KeyType::Api) => Some(KeyKind::ApiAccessToken),
        _ => None,
    };
    if let (Some(configured), Some(actual)) = (&request.kind_hint, api_kind)
        && *configured != actual
    {
        return Err(Error::KindMismatch {
            key_id,
            configured: configured.clone(),
            actual,
        });
    }
    let kind = request.kind_hint.clone().unwrap_or(kind);
    let source = metadata.clone().or(known);
    let template = match (&kind, &request.migrate_to) {
        (KeyKind::ApiAccessToken, Some(client)) => Template::OauthClient(ClientTemplate {
            scopes: client.scopes.clone(),
            tags: client.tags.clone(),
            description: Some(
                client
                    .description
                    .clone()
                    .unwrap_or_else(|| "migrated from an API token".to_owned()),
            ),
            migrated_from: Some(key_id.clone()),
        }),
        (_, Some(_)) => {
            return Err(Error::UnsupportedKind {
                key_id,
                kind: format!("{kind} (only API access tokens are migrated to OAuth clients)"),
            });
        }
        (KeyKind::AuthKey, None) => Template::AuthKey(template_for(
            &key_id,
            status,
            source.as_ref(),
            &request.overrides,
        )?),
        (KeyKind::OAuthClientSecret, None) => Template::OauthClient(client_template_for(
            &key_id,
            status,
            source.as_ref(),
            &request.overrides,
        )?),
        (KeyKind::ApiAccessToken, None) => Template::ApiToken(TokenTemplate {
            expiry_days: source.as_ref().and_then(|k| match (k.created, k.expires) {
                (Some(c), Some(e)) => Some((e - c).whole_days().max(1)),
                _ => None,
            }),
            description: source.as_ref().and_then(|k| k.description.clone()),
        }),
        (KeyKind::Webhook, None) => Template::WebhookSecret {
            endpoint_id: webhook_endpoint(client, request.webhook_endpoint.as_deref()).await?,
        },
        (KeyKind::Scim | KeyKind::Other(_), None) => {
            return Err(Error::UnsupportedKind {
                key_id,
                kind: kind.to_string(),
            });
        }
    };

    let mut warnings = Vec::new();
    let discovery = if request.roots.is_empty() {
        Discovery::default()
    } else {
        file::locate(&request.roots, std::slice::from_ref(&key_id))?
    };
    // A file a configured place already names is that place's: planned once, as configured.
    let by_field =
        |spec: &crate::sink::SinkSpec| !matches!(spec, crate::sink::SinkSpec::File { .. });
    let configured_names = configured_files(
        request
            .configured
            .iter()
            .map(|reading| (&reading.sink.spec, None)),
    );
    let field_names = configured_files(
        request
            .configured
            .iter()
            .filter(|reading| by_field(&reading.sink.spec))
            .map(|reading| (&reading.sink.spec, None)),
    );
    // A file that cannot be written is one more file the rotation cannot update (item 7).
    let mut files: Vec<FileMatch> = Vec::with_capacity(discovery.matches.len());
    let mut unwritable_files = Vec::new();
    for m in &discovery.matches {
        if configured_names.contains(&m.path) {
            // A place by field updates that field only: other copies of the key in the file
            // would keep the old key after it is revoked.
            if field_names.contains(&m.path) && m.occurrences.len() > 1 {
                unwritable_files.push(format!(
                    "{} (holds the key {} times, but a configured place updates one field of it: configure it as `type = \"file\"` to update every copy)",
                    m.display_path.display(),
                    m.occurrences.len()
                ));
            }
            continue;
        }
        match crate::fs::check_writable(&m.path, m.route()) {
            Ok(()) => files.push(m.clone()),
            Err(e) => unwritable_files.push(format!(
                "{} (cannot be written: {})",
                m.display_path.display(),
                error_chain(&e)
            )),
        }
    }
    // Every place must be writable before anything is minted: finding out after leaves a
    // live key that the places do not hold.
    let unwritable: Vec<String> = request
        .configured
        .iter()
        .filter_map(super::places::Reading::unwritable)
        .map(ToString::to_string)
        .collect();
    if !unwritable.is_empty() {
        return Err(Error::Unwritable { places: unwritable });
    }
    if let Some(failed) = request
        .configured
        .iter()
        .find_map(super::places::Reading::failed)
    {
        return Err(Error::Unreadable(failed.to_string()));
    }
    for reading in &request.configured {
        if let Some(held) = reading.key_id().filter(|id| *id != key_id) {
            warnings.push(format!(
                "{} holds key {held}, not {key_id}: out of sync; it gets the new key too",
                crate::sink::describe(&reading.sink.spec)
            ));
        }
    }
    if discovery.matches.is_empty() && request.configured.is_empty() {
        return Err(Error::NotFoundInFiles {
            key_id,
            roots: request.roots,
        });
    }
    if let KeyRef::Credential(c) = &request.key {
        let given = c.fingerprint();
        let others = files
            .iter()
            .flat_map(|f| &f.occurrences)
            .filter(|o| o.fingerprint != given)
            .count();
        if others > 0 {
            warnings.push(format!(
                "{others} occurrence(s) of key {key_id} differ from the value given (another form of the same key, such as a tailnet-lock wrapped one); they are replaced too"
            ));
        }
    }
    if request
        .key
        .credential()
        .is_some_and(crate::key::Credential::is_wrapped)
        || files.iter().flat_map(|f| &f.occurrences).any(|o| o.wrapped)
    {
        warnings.push("the old key is tailnet-lock wrapped; the new key is written unwrapped: sign it with `tailscale lock sign` if your tailnet requires it".into());
    }
    let mut not_updated = not_updatable(&discovery);
    not_updated.extend(unwritable_files);
    if !not_updated.is_empty() && !request.skip_unwritable {
        return Err(Error::CannotUpdate {
            key_id,
            places: not_updated,
        });
    }
    for place in &not_updated {
        warnings.push(format!(
            "--skip-unwritable: {place} is not updated; it keeps the old key, which is revoked"
        ));
    }
    if status.is_live() && request.revoke_first {
        warnings.push("--revoke-first: the old key is revoked BEFORE the new one is in place; its consumers fail until the rotation completes".into());
    }
    if request.revoke_first && template.mint_retires_old() {
        return Err(Error::InvalidOverride("--revoke-first does not apply to webhook secrets: rotating one retires the old secret at once".into()));
    }
    if let Template::OauthClient(ClientTemplate {
        migrated_from: Some(_),
        ..
    }) = &template
    {
        warnings.push("the token's consumers receive an OAuth client secret (`tskey-client-…`) in its place: configure them to use it as an OAuth client (for Terraform: TAILSCALE_OAUTH_CLIENT_ID and TAILSCALE_OAUTH_CLIENT_SECRET)".into());
    }
    if let Template::OauthClient(ClientTemplate {
        migrated_from: None,
        ..
    }) = &template
    {
        warnings.push(
            "the old client's ID is replaced too wherever it stands on its own in the files".into(),
        );
    }
    if !status.is_live() {
        warnings.push(format!("key {key_id} is already {status}: its consumers are failing now; the rotation mints a replacement and puts it in place"));
    }

    let mut planned_versions = std::collections::HashMap::new();
    let mut sinks: Vec<SinkPlan> = Vec::new();
    // Each credential whose places are written has its `verify` run, whichever way the
    // rotation was asked for (`--credential`, a key its places hold, `--due`).
    let mut credential_verify: Vec<crate::journal::CredentialVerify> = Vec::new();
    for reading in &request.configured {
        if let Some(name) = &reading.credential
            && !reading.credential_verify.is_empty()
            && !credential_verify.iter().any(|c| c.credential == *name)
        {
            credential_verify.push(crate::journal::CredentialVerify {
                credential: name.clone(),
                run: reading.credential_verify.clone(),
            });
        }
        if let Ok(snapshot) = &reading.snapshot {
            planned_versions.insert(sinks.len(), Expect::from_snapshot(snapshot));
        }
        // A place in a file is pinned to the file its path resolves to now, in this run and
        // every later one (the journal records it): a folder swapped for a link since is
        // refused instead of written through.
        let resolved = crate::sink::file_path(&reading.sink.spec)
            .and_then(|path| crate::fs::resolve_folder(path).ok());
        sinks.push(SinkPlan::Configured {
            spec: reading.sink.spec.clone(),
            credential: reading.credential.clone(),
            after: reading.sink.after.clone(),
            verify: reading.sink.verify.clone(),
            held_at_plan: reading.key_id(),
            resolved,
        });
    }
    sinks.extend(files.iter().map(|m| SinkPlan::File {
        path: m.path.clone(),
        // A name that is not UTF-8 is shown with its odd bytes as `\xNN`, not as U+FFFD:
        // two such names must not read the same.
        display: m.display_path.to_str().map_or_else(
            || crate::text::path(&m.display_path).into_owned(),
            str::to_owned,
        ),
    }));
    let started = Started {
        rotation_id: new_rotation_id(now),
        tailnet: client.tailnet().to_owned(),
        user: request.user,
        credential: request.credential,
        old: OldKey {
            key_id,
            kind: kind.slug().to_owned(),
            fingerprint: request
                .key
                .credential()
                .map(crate::key::Credential::fingerprint),
            metadata,
        },
        template,
        resolved_roots: request
            .roots
            .iter()
            .map(|root| std::fs::canonicalize(root).unwrap_or_else(|_| root.clone()))
            .collect(),
        roots: request.roots,
        sinks,
        revoke_first: request.revoke_first,
        verify_cmd: request
            .verify_cmd
            .as_deref()
            .map(crate::journal::CommandDigest::of),
        credential_verify,
        not_updated,
    };
    Ok(Plan {
        started,
        status,
        files,
        discovery,
        warnings,
        planned_versions,
    })
}

/// The new key's properties: the old key's, overridden by flags.
fn template_for(
    key_id: &KeyId,
    status: KeyStatus,
    old: Option<&Key>,
    overrides: &Overrides,
) -> Result<AuthKeyTemplate, Error> {
    if overrides
        .expiry_seconds
        .is_some_and(|e| !(1..=MAX_AUTH_KEY_EXPIRY_SECONDS).contains(&e))
    {
        return Err(Error::InvalidOverride(
            "--expiry must be between 1 second and 90 days".into(),
        ));
    }
    let Some(old) = old else {
        let mut missing = Vec::new();
        if overrides.reusable.is_none() {
            missing.push("--reusable");
        }
        if overrides.ephemeral.is_none() {
            missing.push("--ephemeral");
        }
        if overrides.preauthorized.is_none() {
            missing.push("--preauthorized");
        }
        if overrides.tags.is_none() {
            missing.push("--tags");
        }
        if !missing.is_empty() {
            return Err(Error::UnknownProperties {
                key_id: key_id.clone(),
                status,
                missing,
            });
        }
        return Ok(AuthKeyTemplate {
            reusable: overrides.reusable.unwrap_or_default(),
            ephemeral: overrides.ephemeral.unwrap_or_default(),
            preauthorized: overrides.preauthorized.unwrap_or_default(),
            tags: overrides.tags.clone().unwrap_or_default(),
            expiry_seconds: overrides.expiry_seconds,
            description: overrides.description.clone(),
        });
    };
    let caps = old.device_capabilities();
    // The original lifetime, not what is left of it.
    let lifetime =
        old.expiry_seconds
            .filter(|s| *s > 0)
            .or_else(|| match (old.created, old.expires) {
                (Some(c), Some(e)) => Some((e - c).whole_seconds()),
                _ => None,
            });
    Ok(AuthKeyTemplate {
        reusable: overrides.reusable.unwrap_or(caps.reusable),
        ephemeral: overrides.ephemeral.unwrap_or(caps.ephemeral),
        preauthorized: overrides.preauthorized.unwrap_or(caps.preauthorized),
        tags: overrides.tags.clone().unwrap_or(caps.tags),
        expiry_seconds: overrides
            .expiry_seconds
            .or(lifetime.map(|s| s.clamp(1, MAX_AUTH_KEY_EXPIRY_SECONDS))),
        description: overrides
            .description
            .clone()
            .or_else(|| old.description.clone()),
    })
}

/// The webhook whose secret is rotated: the one named, else the tailnet's only webhook.
async fn webhook_endpoint(client: &api::Client, named: Option<&str>) -> Result<String, Error> {
    if let Some(id) = named {
        return Ok(id.to_owned());
    }
    let hooks = client
        .list_webhooks()
        .await
        .map_err(|source| Error::Webhooks { source })?;
    match hooks.as_slice() {
        [one] => Ok(one.endpoint_id.clone()),
        [] => Err(Error::InvalidOverride("the tailnet has no webhooks".into())),
        many => Err(Error::InvalidOverride(format!(
            "the tailnet has {} webhooks; name the one this secret signs with --webhook-endpoint ({})",
            many.len(),
            many.iter()
                .map(|h| format!("{} -> {}", h.endpoint_id, h.endpoint_url))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The replacement OAuth client's properties: the old client's, overridden by flags.
fn client_template_for(
    key_id: &KeyId,
    status: KeyStatus,
    old: Option<&Key>,
    overrides: &Overrides,
) -> Result<ClientTemplate, Error> {
    let scopes = overrides
        .scopes
        .clone()
        .or_else(|| old.map(|k| k.scopes.clone()).filter(|s| !s.is_empty()));
    let tags = overrides
        .tags
        .clone()
        .or_else(|| old.map(|k| k.tags.clone()));
    match (scopes, tags) {
        (Some(scopes), Some(tags)) => Ok(ClientTemplate {
            scopes,
            tags,
            description: overrides
                .description
                .clone()
                .or_else(|| old.and_then(|k| k.description.clone())),
            migrated_from: None,
        }),
        (scopes, tags) => {
            let mut missing = Vec::new();
            if scopes.is_none() {
                missing.push("--scopes");
            }
            if tags.is_none() {
                missing.push("--tags");
            }
            Err(Error::UnknownProperties {
                key_id: key_id.clone(),
                status,
                missing,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_ids_sort_by_time_and_are_unique() {
        let a = new_rotation_id(time::macros::datetime!(2026-11-28 02:15:30 UTC));
        let b = new_rotation_id(time::macros::datetime!(2026-11-28 02:15:31 UTC));
        assert!(a.starts_with("r20261128021530") && a.len() == 21, "{a}");
        assert!(a < b);
        assert_ne!(
            new_rotation_id(OffsetDateTime::UNIX_EPOCH),
            new_rotation_id(OffsetDateTime::UNIX_EPOCH)
        );
    }

    #[test]
    fn unknown_properties_name_the_missing_flags() {
        let id: KeyId = "kX1CNTRL".parse().unwrap();
        let err = template_for(
            &id,
            KeyStatus::NotFound,
            None,
            &Overrides {
                reusable: Some(true),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--ephemeral")
                && msg.contains("--preauthorized")
                && msg.contains("--tags")
                && !msg.contains("--reusable"),
            "{msg}"
        );
        let ok = template_for(
            &id,
            KeyStatus::NotFound,
            None,
            &Overrides {
                reusable: Some(true),
                ephemeral: Some(false),
                preauthorized: Some(true),
                tags: Some(vec![]),
                expiry_seconds: None,
                description: None,
                scopes: None,
            },
        )
        .unwrap();
        assert!(ok.reusable && ok.preauthorized && !ok.ephemeral);
    }

    #[test]
    fn the_original_lifetime_is_kept() {
        let key: Key = serde_json::from_value(serde_json::json!({
            "id": "kA1CNTRL", "keyType": "auth", "created": "2026-01-01T00:00:00Z", "expires": "2026-01-31T00:00:00Z",
            "capabilities": {"devices": {"create": {"reusable": true, "ephemeral": true, "preauthorized": false, "tags": ["tag:ci"]}}}
        }))
        .unwrap();
        let t = template_for(&key.id, KeyStatus::Live, Some(&key), &Overrides::default()).unwrap();
        assert_eq!(t.expiry_seconds, Some(30 * 24 * 3600));
        assert!(t.reusable && t.ephemeral && !t.preauthorized);
        assert_eq!(t.tags, vec!["tag:ci".to_owned()]);
    }
}

#[cfg(test)]
mod not_updatable_tests {
    use super::*;
    use crate::sink::file::{Problem, ProblemKind};

    #[test]
    fn unreadable_files_may_hold_the_key_but_missing_ones_do_not() {
        let problem = |path: &str, error_kind: &str| Problem {
            path: PathBuf::from(path),
            kind: ProblemKind::Unreadable {
                error_kind: error_kind.to_owned(),
                message: "Permission denied (os error 13)".to_owned(),
            },
        };
        let discovery = Discovery {
            problems: vec![
                problem("app/secret.env", "PermissionDenied"),
                problem("app/dangling", "NotFound"),
            ],
            ..Discovery::default()
        };
        let places = not_updatable(&discovery);
        assert_eq!(places.len(), 1, "{places:?}");
        assert!(places[0].starts_with("app/secret.env (could not be read"));
    }
}
