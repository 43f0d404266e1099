//! Containment: which devices a leaked auth key may have joined, and quarantining them.
//!
//! Tailscale's API cannot say which devices an auth key registered (tailscale/tailscale#10424),
//! so this module reasons from what it can read:
//!
//! - the key's record (tags, owner, reusable/ephemeral, created, revoked or expired), from the
//!   API or, once the API has forgotten the key, from a rotation journal that recorded it;
//! - the registration window: from the key's creation (or the leak time, `since`, when later:
//!   a device that joined before the leak did not use the leaked copy) to its revocation or
//!   expiry (or now);
//! - the device list (`fields=all`) and the configuration audit log's `NODE.CREATE` events.
//!
//! Ranking: **exact** when the audit log names the key itself as the actor of the device's
//! creation (observed upstream for tailnet-owned keys, undocumented); **strong** when owner,
//! tags and flags match, the device joined in the window, and the key is user-owned or
//! single-use; **possible** when a reusable tagged key is shared by a fleet and the device has
//! its tags and joined in the window. Each candidate carries its evidence, and the ways it
//! differs from the rest of the fleet with the same tags (os, client version, routes, copied
//! node state) are listed as `outlier:` evidence and rank it higher within its confidence.
//! They never raise the confidence itself: they say how a device differs from its fleet, not
//! that it used the key (the attacker chooses them, and can only make them go away), and a
//! legitimate new machine with another OS or a newer client would otherwise be acted on at the
//! default threshold, by actions (expire, delete) that cannot be undone.
//!
//! The audit log drops a device only when it names, as the device's creator, something that
//! positively could not have used the key: another auth key, or (for a user-owned key, whose
//! joins are logged under its owner) another user. How Tailscale logs a join by auth key is
//! not documented, so any other actor (a node, an automated worker, …) neither speaks for
//! nor against the key: the device is ranked as the device list alone ranks it, and its
//! evidence says the actor was not recognised.
//!
//! Shared-in (external) devices are never candidates: they belong to another tailnet.

pub mod act;

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use time::OffsetDateTime;

use crate::api::{AuditEvent, Device, Key};
use crate::journal;
use crate::key::KeyId;

/// How sure we are that a device joined with the key. Ordered: `Possible < Strong < Exact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Same tags, joined in the window, but a reusable key shared by a fleet.
    Possible,
    /// Owner, tags and flags match and it joined in the window; the key is user-owned or
    /// single-use.
    Strong,
    /// The audit log names the key as the creator.
    Exact,
}

impl Confidence {
    /// The lowercase name used on the command line and in JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Possible => "possible",
            Self::Strong => "strong",
            Self::Exact => "exact",
        }
    }

    /// Parses `exact`, `strong` or `possible`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "exact" => Some(Self::Exact),
            "strong" => Some(Self::Strong),
            "possible" => Some(Self::Possible),
            _ => None,
        }
    }
}

/// Where the key's record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum KeySource {
    /// `GET /keys/{id}` answered.
    Api,
    /// The API no longer knows the key; a rotation journal recorded it.
    Journal {
        /// The rotation that recorded it.
        rotation_id: String,
    },
}

/// What containment needs to know of the leaked key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyFacts {
    /// The key ID.
    pub id: KeyId,
    /// The owning user's ID; `None` for a tailnet-owned key.
    pub owner: Option<String>,
    /// Tags the key gives devices.
    pub tags: Vec<String>,
    /// Can register several devices.
    pub reusable: bool,
    /// Its devices are ephemeral.
    pub ephemeral: bool,
    /// Its devices skip approval.
    pub preauthorized: bool,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created: Option<OffsetDateTime>,
    /// When it stopped working (revoked or expired), if it has.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
    /// Where this record came from.
    pub source: KeySource,
}

impl KeyFacts {
    /// The facts of an auth key's API record.
    #[must_use]
    pub fn from_key(key: &Key, source: KeySource) -> Self {
        let caps = key.device_capabilities();
        let ended = match (key.revoked, key.expires) {
            (Some(r), Some(e)) => Some(r.min(e)),
            (r, e) => r.or(e),
        };
        Self {
            id: key.id.clone(),
            owner: key.user_id.clone().filter(|u| !u.is_empty()),
            tags: caps.tags,
            reusable: caps.reusable,
            ephemeral: caps.ephemeral,
            preauthorized: caps.preauthorized,
            created: key.created,
            ended,
            source,
        }
    }
}

/// The key's API record as a rotation journal kept it (the old key of a rotation, or a key
/// it minted), newest journal first; `None` if no journal has it. Only journals whose seal
/// verifies count: a planted one would choose which devices look like the key's.
///
/// A journal that cannot be read is skipped, and named in the warnings returned (one damaged
/// file must not stop the containment of a key it has nothing to do with), unless its bytes
/// name this key: then it may hold the key's newest record, which decides the window and so
/// which devices are candidates, and the investigation stops until a person settles it
/// ([`Error::UnreadableJournal`]).
pub fn key_from_journals(
    dir: &crate::rotate::session::StateDir,
    id: &KeyId,
) -> Result<FromJournals, Error> {
    let mut found: Option<(Key, String, OffsetDateTime)> = None;
    let mut skipped = Vec::new();
    for rotation in journal::list(dir.path())? {
        let path = journal::Journal::path_of(dir.path(), &rotation);
        let records = match journal::read(&path, dir.key()) {
            Ok(records) => records,
            Err(e) if e.is_unsealed() => continue,
            Err(e) if names_key(&path, id) => {
                return Err(Error::UnreadableJournal {
                    key_id: id.clone(),
                    path,
                    problem: e.to_string(),
                });
            }
            Err(e) => {
                skipped.push(format!(
                    "{}; skipped: it does not name key {id}",
                    crate::text::escape(&e.to_string())
                ));
                continue;
            }
        };
        for record in records {
            let key = match record.event {
                journal::Event::Started(started) if started.old.key_id == *id => {
                    started.old.metadata
                }
                journal::Event::Minted {
                    key_id, metadata, ..
                } if key_id == *id => metadata,
                _ => None,
            };
            if let Some(key) = key
                && found.as_ref().is_none_or(|(_, _, at)| record.at > *at)
            {
                found = Some((key, rotation.clone(), record.at));
            }
        }
    }
    Ok((found.map(|(key, rotation, _)| (key, rotation)), skipped))
}

/// What [`key_from_journals`] found: the key's record and the rotation that recorded it (if
/// any journal did), and a warning for each journal skipped because it cannot be read.
pub type FromJournals = (Option<(Key, String)>, Vec<String>);

/// Whether the file at `path` names key `id` as a JSON string (`"kABC…CNTRL"`), as a journal
/// that records it would; `false` when it cannot be read at all (a folder, say).
fn names_key(path: &std::path::Path, id: &KeyId) -> bool {
    let quoted = format!("\"{id}\"");
    std::fs::read(path)
        .is_ok_and(|bytes| bytes.windows(quoted.len()).any(|w| w == quoted.as_bytes()))
}

/// When the key leaked, as the user gave it: a time, or a duration before the API server's
/// now (resolved against the server's clock, which tests and skewed machines need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// An absolute time.
    At(OffsetDateTime),
    /// This long before the server's now.
    Ago(time::Duration),
}

impl Since {
    /// The time this names, given the server's now.
    #[must_use]
    pub fn resolve(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Self::At(at) => at,
            // Saturating: a duration from a caller that did not bound it must not panic.
            Self::Ago(ago) => now.checked_sub(ago).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }
    }
}

impl From<OffsetDateTime> for Since {
    fn from(at: OffsetDateTime) -> Self {
        Self::At(at)
    }
}

/// When the key could have registered the devices we look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// The later of the key's creation and the leak time.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// The key's revocation or expiry, or now.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

impl Window {
    /// The window for `key`, starting no earlier than `since` (the leak time) when given.
    #[must_use]
    pub fn of(key: &KeyFacts, since: Option<OffsetDateTime>, now: OffsetDateTime) -> Self {
        // Without a creation time, the audit log's 90 days are as far back as anything goes.
        let created = key.created.unwrap_or(now - time::Duration::days(90));
        let start = since.map_or(created, |s| s.max(created));
        let end = key.ended.map_or(now, |e| e.min(now)).max(start);
        Self { start, end }
    }

    fn contains(&self, t: OffsetDateTime) -> bool {
        self.start <= t && t <= self.end
    }
}

/// The legitimate fleet: hostnames or node IDs, one a line (`#` starts a comment).
///
/// A node ID (or legacy ID) is given by the control plane and leaves a device out. A
/// hostname is chosen by the device itself, so an attacker's node can call itself `web-1`:
/// a device listed by hostname alone is left out only when nothing else speaks against it
/// (the audit log does not name the key as its creator, and it is no outlier).
#[derive(Debug, Clone, Default)]
pub struct Expected(HashSet<String>);

impl Expected {
    /// Parses the `--expected` file's text.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or_default().trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    fn lists_id_of(&self, device: &Device) -> bool {
        self.0.contains(&device.node_id) || (!device.id.is_empty() && self.0.contains(&device.id))
    }

    fn lists_hostname_of(&self, device: &Device) -> bool {
        self.0.contains(&device.hostname)
    }

    /// How many names it lists.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it lists none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A device that may have joined with the key.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Its node ID.
    pub node_id: String,
    /// Its machine name.
    pub hostname: String,
    /// How sure we are.
    pub confidence: Confidence,
    /// Why, one fact a line; `outlier: …` lines say how it differs from its fleet.
    pub evidence: Vec<String>,
    /// The device as the API described it, before anything was done to it.
    #[serde(skip)]
    pub device: Device,
    /// How many outlier facts it has (ranks it within its confidence).
    #[serde(skip)]
    pub outliers: usize,
}

/// What the analysis found.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Ranked: confidence, then outliers, then newest first.
    pub candidates: Vec<Candidate>,
    /// Devices left out because `--expected` lists their node ID (given by the control
    /// plane).
    pub expected_by_id: usize,
    /// Devices left out because `--expected` lists their hostname (chosen by the device) and
    /// nothing spoke against them.
    pub expected_by_hostname: usize,
    /// Shared-in devices, never considered.
    pub external_skipped: usize,
}

/// What is known about the key's owner and the audit log, besides the devices.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The owner's login name (as devices show it in `user`), when known.
    pub owner_login: Option<&'a str>,
    /// `NODE.CREATE` events in the window, or `None` when the log could not be read.
    pub audit: Option<&'a [AuditEvent]>,
    /// The leak time, for the outlier mark.
    pub since: Option<OffsetDateTime>,
}

fn same_tags(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Ranks `devices` against the key. Pure: the callers fetch, this decides.
#[must_use]
pub fn analyze(
    key: &KeyFacts,
    window: &Window,
    devices: &[Device],
    context: &Context<'_>,
    expected: &Expected,
) -> Analysis {
    let creators: HashMap<&str, &AuditEvent> = context
        .audit
        .unwrap_or_default()
        .iter()
        .filter(|e| e.target.kind == "NODE" && e.action == "CREATE")
        .map(|e| (e.target.id.as_str(), e))
        .collect();
    let mut analysis = Analysis::default();
    for device in devices {
        if device.is_external {
            analysis.external_skipped += 1;
            continue;
        }
        let Some(candidate) = rank(key, window, device, &creators, context) else {
            continue;
        };
        if expected.lists_id_of(device) {
            analysis.expected_by_id += 1;
            continue;
        }
        analysis.candidates.push(candidate);
    }
    // How many devices of the tailnet go by each hostname: an attacker's node that copies a
    // fleet member's name is one of two.
    let mut hostnames: HashMap<&str, usize> = HashMap::new();
    for device in devices.iter().filter(|d| !d.is_external) {
        *hostnames.entry(device.hostname.as_str()).or_default() += 1;
    }
    mark_outliers(key, &mut analysis.candidates, devices, context.since);
    for c in &mut analysis.candidates {
        let sharing = hostnames.get(c.hostname.as_str()).copied().unwrap_or(0);
        if sharing > 1 {
            c.outliers += 1;
            c.evidence.push(format!(
                "outlier: {sharing} devices of the tailnet go by hostname {} (one may have copied another's)",
                c.hostname
            ));
        }
    }
    analysis.candidates.retain_mut(|c| {
        if !expected.lists_hostname_of(&c.device) {
            return true;
        }
        let sharing = hostnames.get(c.hostname.as_str()).copied().unwrap_or(0);
        let against = if sharing > 1 {
            format!("{sharing} devices go by that hostname, so the list cannot tell which is the fleet's")
        } else if c.confidence == Confidence::Exact {
            "the audit log names the key as its creator".to_owned()
        } else if c.outliers > 0 {
            "it stands out from its fleet".to_owned()
        } else {
            analysis.expected_by_hostname += 1;
            return false;
        };
        c.evidence.push(format!(
            "its hostname is listed in --expected, but a device chooses its own hostname: kept because {against} (list node IDs to leave it out)"
        ));
        true
    });
    analysis.candidates.sort_by(|a, b| {
        b.confidence
            .cmp(&a.confidence)
            .then(b.outliers.cmp(&a.outliers))
            .then(b.device.created.cmp(&a.device.created))
            .then(a.hostname.cmp(&b.hostname))
    });
    analysis
}

/// Who the audit log says created a device, as far as the key is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creator {
    /// The key itself.
    Key,
    /// The key's owner (its user; for a tailnet-owned key, an OAuth client).
    Owner,
    /// Positively something that could not have used this key: another auth key, or (for a
    /// user-owned key, whose joins are logged under its owner) another user logging in.
    Someone,
    /// An actor this check does not recognise (a node, an automated worker, an OAuth client
    /// for a user-owned key, a user for a tailnet-owned key, …): how Tailscale logs a join
    /// by auth key is not documented, so it neither speaks for nor against the key.
    Unrecognised,
}

/// Whether `id` has the shape of a Tailscale key ID (`k…CNTRL`): an auth key, or the OAuth
/// client behind an `OAUTH_CLIENT` actor.
fn looks_like_key_id(id: &str) -> bool {
    id.len() > "kCNTRL".len()
        && id.starts_with('k')
        && id.ends_with("CNTRL")
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn creator_of(key: &KeyFacts, actor: &crate::api::AuditActor) -> Creator {
    if actor.id == key.id.as_str() {
        return Creator::Key;
    }
    match (&key.owner, actor.kind.as_str()) {
        (Some(owner), _) if actor.id == *owner => Creator::Owner,
        // A tailnet-owned key's joins are logged under the OAuth client that made it.
        (None, "OAUTH_CLIENT") => Creator::Owner,
        // A user-owned key's joins are logged under its owner: another user is someone
        // logging in.
        (Some(_), "USER") => Creator::Someone,
        // OAuth client IDs have a key ID's shape too: only another actor is another key.
        (_, kind) if kind != "OAUTH_CLIENT" && looks_like_key_id(&actor.id) => Creator::Someone,
        _ => Creator::Unrecognised,
    }
}

fn rank(
    key: &KeyFacts,
    window: &Window,
    device: &Device,
    creators: &HashMap<&str, &AuditEvent>,
    context: &Context<'_>,
) -> Option<Candidate> {
    let mut evidence = Vec::new();
    let mut creator = creators.get(device.node_id.as_str());
    let by_key = creator.is_some_and(|e| creator_of(key, &e.actor) == Creator::Key);
    if let Some(event) = creator {
        let actor = format!(
            "{} {}",
            event.actor.kind.to_lowercase().replace('_', " "),
            event.actor.id
        );
        match creator_of(key, &event.actor) {
            Creator::Key => evidence.push(format!(
                "audit log: the key itself created this device at {} (event group {})",
                rfc3339(event.event_time),
                event.event_group_id
            )),
            Creator::Owner => evidence.push(format!(
                "audit log: created at {} by {actor}, consistent with the key's owner",
                rfc3339(event.event_time),
            )),
            // Someone else registered it: another key, or a person logging in.
            Creator::Someone => return None,
            Creator::Unrecognised => {
                // Neither for nor against: ranked from the device list alone.
                evidence.push(format!(
                    "audit log: created at {} by {actor}, an actor not recognised as the key, its owner, another key or another user: ranked from the device list alone",
                    rfc3339(event.event_time),
                ));
                creator = None;
            }
        }
    }
    let created = device.created?;
    let in_window = window.contains(created);
    if !in_window && !by_key {
        return None;
    }
    let owner_matches = if key.tags.is_empty() {
        match (context.owner_login, &key.owner) {
            (Some(login), Some(_)) => device.tags.is_empty() && device.user == login,
            // Without the owner's login name, only the audit log can tie it to the owner.
            _ => creator.is_some() && device.tags.is_empty(),
        }
    } else {
        same_tags(&device.tags, &key.tags)
    };
    let flags_match = device.is_ephemeral == key.ephemeral;
    if !(by_key || owner_matches && flags_match) {
        return None;
    }
    if in_window {
        evidence.push(format!("joined at {}, inside the window", rfc3339(created)));
    }
    if owner_matches {
        evidence.push(if key.tags.is_empty() {
            format!("owned by {}, the key's owner", device.user)
        } else {
            format!("tags {} are the key's", key.tags.join(","))
        });
    }
    let confidence = if by_key {
        Confidence::Exact
    } else if key.owner.is_some() && key.tags.is_empty() {
        evidence.push("the key is user-owned".to_owned());
        Confidence::Strong
    } else if !key.reusable {
        evidence.push("the key is single-use".to_owned());
        Confidence::Strong
    } else {
        evidence.push(
            "the key is reusable and tagged: any device of the fleet may have used it".to_owned(),
        );
        Confidence::Possible
    };
    Some(Candidate {
        node_id: device.node_id.clone(),
        hostname: device.hostname.clone(),
        confidence,
        evidence,
        device: device.clone(),
        outliers: 0,
    })
}

/// The most common value, if there is one.
fn usual<'a>(values: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(v, _)| v)
}

fn mark_outliers(
    key: &KeyFacts,
    candidates: &mut [Candidate],
    devices: &[Device],
    since: Option<OffsetDateTime>,
) {
    let suspects: HashSet<String> = candidates.iter().map(|c| c.node_id.clone()).collect();
    let fleet: Vec<&Device> = devices
        .iter()
        .filter(|d| !d.is_external && !suspects.contains(&d.node_id))
        .filter(|d| !key.tags.is_empty() && same_tags(&d.tags, &key.tags))
        .collect();
    let usual_os = usual(fleet.iter().map(|d| d.os.as_str()));
    let usual_version = usual(fleet.iter().map(|d| d.client_version.as_str()));
    let routers = fleet
        .iter()
        .filter(|d| !d.advertised_routes.is_empty())
        .count();
    for candidate in candidates {
        let device = &candidate.device;
        let mut marks = Vec::new();
        if let Some(os) = usual_os
            && device.os != os
        {
            marks.push(format!("outlier: os {} (the fleet runs {os})", device.os));
        }
        if let Some(version) = usual_version
            && device.client_version != version
        {
            marks.push(format!(
                "outlier: client {} (the fleet runs {version})",
                device.client_version
            ));
        }
        if !fleet.is_empty() && !device.advertised_routes.is_empty() && routers * 2 < fleet.len() {
            marks.push(format!(
                "outlier: advertises routes {} ({routers} of {} fleet devices do)",
                device.advertised_routes.join(","),
                fleet.len()
            ));
        }
        if device.multiple_connections {
            marks.push("outlier: several machines share its node key".to_owned());
        }
        if let (Some(since), Some(created)) = (since, device.created)
            && created >= since
        {
            marks.push(format!(
                "outlier: joined after the leak time {}",
                rfc3339(since)
            ));
        }
        candidate.outliers = marks.len();
        candidate.evidence.extend(marks);
    }
}

/// What can stop an investigation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither the API nor any journal knows the key.
    #[error("key {0} is unknown to the API and to every journal in the state directory")]
    UnknownKey(KeyId),
    /// The leak time is after the API server's now: no device can have joined after it, so
    /// the window would be empty and every device left out.
    #[error("the leak time {} is after the API server's current time {}: no device can have joined since", rfc3339(*since), rfc3339(*now))]
    SinceInFuture {
        /// The leak time given.
        since: OffsetDateTime,
        /// The server's now.
        now: OffsetDateTime,
    },
    /// The key is not an auth key: only auth keys register devices.
    #[error("key {0} is not an auth key; only auth keys register devices")]
    NotAuthKey(KeyId),
    /// An API call failed. A 403 names the scope the credential lacks.
    #[error("{what} failed{}", scope_hint(source, scope))]
    Api {
        /// What was being read or changed.
        what: &'static str,
        /// The scope the call needs.
        scope: &'static str,
        /// The API's error.
        #[source]
        source: crate::api::Error,
    },
    /// A journal could not be read.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// A rotation journal that cannot be read names the key: it may hold the key's newest
    /// record, so nothing is decided without it.
    #[error(
        "rotation journal {} cannot be read ({}), and it names key {key_id}: it may hold the key's newest record",
        crate::text::path(path),
        crate::text::escape(problem)
    )]
    UnreadableJournal {
        /// The key.
        key_id: KeyId,
        /// The journal.
        path: std::path::PathBuf,
        /// Why it cannot be read.
        problem: String,
    },
}

fn scope_hint(source: &crate::api::Error, scope: &str) -> String {
    if source.status() == Some(403) {
        format!(": the credential lacks the `{scope}` scope; give it that scope and run again")
    } else {
        String::new()
    }
}

impl Error {
    fn api(what: &'static str, scope: &'static str) -> impl FnOnce(crate::api::Error) -> Self {
        move |source| Self::Api {
            what,
            scope,
            source,
        }
    }
}

/// Everything `contain` found, before any action.
#[derive(Debug, Clone)]
pub struct Report {
    /// The key.
    pub key: KeyFacts,
    /// The registration window.
    pub window: Window,
    /// The ranked candidates.
    pub analysis: Analysis,
    /// Things the reader must know: the audit log could not be read, the owner could not be
    /// resolved, …
    pub notes: Vec<String>,
    /// The key's API record shows it neither revoked, used up nor expired: it can still join
    /// devices, so containing what it joined is not enough. `false` for a record from a
    /// journal (the API no longer knows the key: it joins nothing).
    pub key_live: bool,
}

/// The `NODE.CREATE` events of the window; `None` (with a note saying why) when the log is
/// not readable (403) or not available on this deployment (404): the ranking then uses the
/// device list alone.
async fn read_audit(
    client: &crate::api::Client,
    window: &Window,
    notes: &mut Vec<String>,
) -> Result<Option<Vec<AuditEvent>>, Error> {
    match client
        .list_audit_log(window.start, window.end, &["NODE.CREATE"])
        .await
    {
        Ok(events) => Ok(Some(events)),
        Err(e) if e.status() == Some(403) => {
            notes.push(
                "the configuration audit log is not readable (the credential lacks the \
                 `logs:configuration:read` scope): ranking from the device list alone, so no \
                 candidate can be exact"
                    .to_owned(),
            );
            Ok(None)
        }
        // The `OpenAPI` description: "Logging is not supported on this deployment of
        // Tailscale".
        Err(e) if e.is_not_found() => {
            notes.push(
                "the configuration audit log is not available on this deployment (the API \
                 answered 404 Not Found): ranking from the device list alone, so no candidate \
                 can be exact"
                    .to_owned(),
            );
            Ok(None)
        }
        Err(e) => Err(Error::api(
            "reading the audit log",
            "logs:configuration:read",
        )(e)),
    }
}

/// Reads the key (from the API, else from the journals in `state_dir`), the device list and
/// the audit log, and ranks the devices. A 403 on the audit log or the user lookup degrades
/// the analysis (and says so in [`Report::notes`]); a 403 on the device list is an error.
pub async fn investigate(
    client: &crate::api::Client,
    state_dir: Option<&crate::rotate::session::StateDir>,
    id: &KeyId,
    since: Option<Since>,
    expected: &Expected,
) -> Result<Report, Error> {
    // Revoked, used up or expired, as the API says (a journal's record: the API forgot it).
    let mut invalid = true;
    let mut notes = Vec::new();
    let key = match client.get_key(id).await {
        Ok(key) => {
            if key
                .key_type
                .as_ref()
                .is_some_and(|t| *t != crate::api::KeyType::Auth)
            {
                return Err(Error::NotAuthKey(id.clone()));
            }
            invalid = key.invalid;
            KeyFacts::from_key(&key, KeySource::Api)
        }
        Err(e) if e.is_not_found() => {
            let found = match state_dir {
                Some(dir) => {
                    let (found, skipped) = key_from_journals(dir, id)?;
                    notes.extend(skipped);
                    found
                }
                None => None,
            };
            let (key, rotation_id) = found.ok_or_else(|| Error::UnknownKey(id.clone()))?;
            KeyFacts::from_key(&key, KeySource::Journal { rotation_id })
        }
        Err(e) => return Err(Error::api("reading the key", "auth_keys:read")(e)),
    };
    let now = client.server_now();
    let key_live = !invalid && key.ended.is_none_or(|ended| ended > now);
    let since = since.map(|s| s.resolve(now));
    if let Some(since) = since.filter(|s| *s > now) {
        return Err(Error::SinceInFuture { since, now });
    }
    let window = Window::of(&key, since, now);
    let devices = client
        .list_devices(&[])
        .await
        .map_err(Error::api("listing devices", "devices:core:read"))?;
    let audit = read_audit(client, &window, &mut notes).await?;
    let mut owner_login = None;
    if let Some(owner) = &key.owner {
        match client.get_user(owner).await {
            Ok(user) if !user.login_name.is_empty() => owner_login = Some(user.login_name),
            Ok(_) => {}
            Err(e) if e.status() == Some(403) || e.is_not_found() => {
                // The audit log names the owner with a login name too.
                owner_login = audit.iter().flatten().find_map(|e| {
                    (e.actor.id == *owner && !e.actor.login_name.is_empty())
                        .then(|| e.actor.login_name.clone())
                });
                if owner_login.is_none() {
                    notes.push(format!(
                        "the key's owner {owner} could not be looked up (`users:read`): \
                         untagged devices are matched through the audit log only"
                    ));
                }
            }
            Err(e) => return Err(Error::api("reading the key's owner", "users:read")(e)),
        }
    }
    let context = Context {
        owner_login: owner_login.as_deref(),
        audit: audit.as_deref(),
        since,
    };
    let analysis = analyze(&key, &window, &devices, &context, expected);
    if analysis.external_skipped > 0 {
        notes.push(format!(
            "{} shared-in device(s) belong to other tailnets and are never touched",
            analysis.external_skipped
        ));
    }
    Ok(Report {
        key,
        window,
        analysis,
        notes,
        key_live,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn key(owner: Option<&str>, tags: &[&str], reusable: bool) -> KeyFacts {
        KeyFacts {
            id: "kLeak123CNTRL".parse::<KeyId>().expect("id"),
            owner: owner.map(str::to_owned),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            reusable,
            ephemeral: false,
            preauthorized: true,
            created: Some(datetime!(2030-01-01 00:00 UTC)),
            ended: None,
            source: KeySource::Api,
        }
    }

    fn device(node: &str, tags: &[&str], created: OffsetDateTime) -> Device {
        Device {
            node_id: node.to_owned(),
            hostname: node.to_lowercase(),
            user: "tagged-devices".to_owned(),
            os: "linux".to_owned(),
            client_version: "1.80.0".to_owned(),
            created: Some(created),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            authorized: true,
            ..Device::default()
        }
    }

    fn create_event(node: &str, actor: &str, kind: &str, at: OffsetDateTime) -> AuditEvent {
        AuditEvent {
            event_time: at,
            event_group_id: "g".to_owned(),
            actor: crate::api::AuditActor {
                id: actor.to_owned(),
                kind: kind.to_owned(),
                login_name: String::new(),
            },
            target: crate::api::AuditTarget {
                id: node.to_owned(),
                name: String::new(),
                kind: "NODE".to_owned(),
                property: None,
            },
            action: "CREATE".to_owned(),
        }
    }

    #[test]
    fn the_window_starts_at_the_leak_and_ends_at_revocation() {
        let mut k = key(None, &["tag:ci"], true);
        k.ended = Some(datetime!(2030-02-01 00:00 UTC));
        let now = datetime!(2030-03-01 00:00 UTC);
        let w = Window::of(&k, Some(datetime!(2030-01-15 00:00 UTC)), now);
        assert_eq!(w.start, datetime!(2030-01-15 00:00 UTC));
        assert_eq!(w.end, datetime!(2030-02-01 00:00 UTC));
        let before_creation = Window::of(&k, Some(datetime!(2029-01-01 00:00 UTC)), now);
        assert_eq!(before_creation.start, datetime!(2030-01-01 00:00 UTC));
    }

    #[test]
    fn audit_actor_key_is_exact_and_fleet_outliers_rank_first() {
        let k = key(None, &["tag:ci"], true);
        let now = datetime!(2030-03-01 00:00 UTC);
        let since = datetime!(2030-02-01 00:00 UTC);
        let w = Window::of(&k, Some(since), now);
        let mut devices: Vec<Device> = (0..5)
            .map(|i| {
                device(
                    &format!("nLegit{i}CNTRL"),
                    &["tag:ci"],
                    datetime!(2030-01-10 00:00 UTC),
                )
            })
            .collect();
        let quiet = device("nQuietCNTRL", &["tag:ci"], datetime!(2030-02-10 00:00 UTC));
        let mut loud = device("nLoudCNTRL", &["tag:ci"], datetime!(2030-02-11 00:00 UTC));
        loud.advertised_routes = vec!["10.0.0.0/8".to_owned()];
        loud.os = "windows".to_owned();
        let mut shared = device("nSharedCNTRL", &[], datetime!(2030-02-12 00:00 UTC));
        shared.is_external = true;
        devices.extend([quiet, loud, shared]);
        let events = vec![
            create_event(
                "nQuietCNTRL",
                "kLeak123CNTRL",
                "AUTOMATED_WORKER",
                datetime!(2030-02-10 00:00 UTC),
            ),
            create_event(
                "nLoudCNTRL",
                "kLeak123CNTRL",
                "AUTOMATED_WORKER",
                datetime!(2030-02-11 00:00 UTC),
            ),
        ];
        let context = Context {
            owner_login: None,
            audit: Some(&events),
            since: Some(since),
        };
        let analysis = analyze(&k, &w, &devices, &context, &Expected::default());
        let ranked: Vec<(&str, Confidence)> = analysis
            .candidates
            .iter()
            .map(|c| (c.node_id.as_str(), c.confidence))
            .collect();
        assert_eq!(
            ranked,
            [
                ("nLoudCNTRL", Confidence::Exact),
                ("nQuietCNTRL", Confidence::Exact)
            ]
        );
        assert!(
            analysis.candidates[0]
                .evidence
                .iter()
                .any(|e| e.contains("advertises routes"))
        );
        assert_eq!(analysis.external_skipped, 1);

        // Without the audit log, the same devices are possible (reusable tagged key).
        let blind = Context {
            audit: None,
            ..context
        };
        let analysis = analyze(
            &k,
            &w,
            &devices,
            &blind,
            &Expected::parse("nQuietCNTRL\n# c\n"),
        );
        assert_eq!(analysis.candidates.len(), 1);
        assert_eq!(analysis.candidates[0].confidence, Confidence::Possible);
        assert_eq!(analysis.expected_by_id, 1);
    }

    /// Red-team finding: an attacker's node that named itself like a fleet member was left
    /// out by `--expected`. A hostname (chosen by the device) leaves out only a device nothing
    /// speaks against; a node ID (given by the control plane) always does.
    #[test]
    fn a_hostname_in_expected_does_not_hide_an_exact_or_outlier_device() {
        let since = datetime!(2030-02-01 00:00 UTC);
        let k = key(None, &["tag:ci"], true);
        let w = Window::of(&k, None, datetime!(2030-03-01 00:00 UTC));
        let mut devices: Vec<Device> = (0..5)
            .map(|i| {
                device(
                    &format!("nFleet{i}CNTRL"),
                    &["tag:ci"],
                    datetime!(2030-01-10 00:00 UTC),
                )
            })
            .collect();
        let mut spoof = device("nSpoofCNTRL", &["tag:ci"], datetime!(2030-02-10 00:00 UTC));
        spoof.hostname = "web-1".to_owned();
        let mut late = device("nLateCNTRL", &["tag:ci"], datetime!(2030-02-11 00:00 UTC));
        late.hostname = "web-2".to_owned();
        devices.extend([spoof, late]);
        let events = vec![create_event(
            "nSpoofCNTRL",
            "kLeak123CNTRL",
            "AUTOMATED_WORKER",
            datetime!(2030-02-10 00:00 UTC),
        )];
        let context = Context {
            owner_login: None,
            audit: Some(&events),
            since: Some(since),
        };
        let analysis = analyze(
            &k,
            &w,
            &devices,
            &context,
            &Expected::parse("web-1\nweb-2\n"),
        );
        let kept: Vec<&str> = analysis
            .candidates
            .iter()
            .map(|c| c.hostname.as_str())
            .collect();
        assert!(kept.contains(&"web-1"), "exact, kept: {kept:?}");
        assert!(
            kept.contains(&"web-2"),
            "joined after --since, kept: {kept:?}"
        );
        assert!(
            analysis
                .candidates
                .iter()
                .filter(|c| c.hostname.starts_with("web-"))
                .all(|c| c
                    .evidence
                    .iter()
                    .any(|e| e.contains("chooses its own hostname")))
        );
        let by_id = analyze(
            &k,
            &w,
            &devices,
            &context,
            &Expected::parse("nSpoofCNTRL\nnLateCNTRL\n"),
        );
        assert!(
            by_id
                .candidates
                .iter()
                .all(|c| !c.hostname.starts_with("web-")),
            "{:?}",
            by_id.candidates
        );
        assert_eq!(by_id.expected_by_id, 2);
    }

    /// Red-team finding F3: an attacker's node that copies a fleet member's hostname was left
    /// out, with the fleet member, by a hostname in `--expected`. A hostname two devices share
    /// leaves out neither, and counts against both.
    #[test]
    fn issue_13_a_hostname_two_devices_share_leaves_neither_out() {
        let k = key(None, &["tag:ci"], true);
        let w = Window::of(&k, None, datetime!(2030-03-01 00:00 UTC));
        let mut devices: Vec<Device> = (0..5)
            .map(|i| {
                let mut d = device(
                    &format!("nFleet{i}CNTRL"),
                    &["tag:ci"],
                    datetime!(2030-01-10 00:00 UTC),
                );
                d.hostname = format!("web-{i}");
                d
            })
            .collect();
        let mut copy = device("nCopyCNTRL", &["tag:ci"], datetime!(2030-02-20 00:00 UTC));
        copy.hostname = "web-3".to_owned();
        devices.push(copy);
        let context = Context {
            owner_login: None,
            audit: None,
            since: None,
        };
        let expected = Expected::parse("web-0\nweb-1\nweb-2\nweb-3\nweb-4\n");
        let analysis = analyze(&k, &w, &devices, &context, &expected);
        let kept: Vec<&str> = analysis
            .candidates
            .iter()
            .map(|c| c.node_id.as_str())
            .collect();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept.contains(&"nCopyCNTRL") && kept.contains(&"nFleet3CNTRL"));
        for c in &analysis.candidates {
            assert!(
                c.evidence
                    .iter()
                    .any(|e| e.contains("2 devices of the tailnet go by hostname web-3")),
                "{:?}",
                c.evidence
            );
            assert!(
                c.evidence
                    .iter()
                    .any(|e| e.contains("cannot tell which is the fleet's")),
                "{:?}",
                c.evidence
            );
        }
        assert_eq!(analysis.expected_by_hostname, 4);
        assert_eq!(analysis.expected_by_id, 0);
    }

    #[test]
    fn a_user_owned_keys_devices_of_that_user_in_the_window_are_strong() {
        let k = key(Some("uAlice"), &[], false);
        let w = Window::of(&k, None, datetime!(2030-03-01 00:00 UTC));
        let mut mine = device("nMineCNTRL", &[], datetime!(2030-02-01 00:00 UTC));
        mine.user = "alice@example.com".to_owned();
        let mut old = mine.clone();
        old.node_id = "nOldCNTRL".to_owned();
        old.created = Some(datetime!(2029-12-01 00:00 UTC));
        let mut bobs = mine.clone();
        bobs.node_id = "nBobCNTRL".to_owned();
        bobs.user = "bob@example.com".to_owned();
        let tagged = device("nTagCNTRL", &["tag:x"], datetime!(2030-02-01 00:00 UTC));
        let context = Context {
            owner_login: Some("alice@example.com"),
            audit: None,
            since: None,
        };
        let analysis = analyze(
            &k,
            &w,
            &[mine, old, bobs, tagged],
            &context,
            &Expected::default(),
        );
        let ids: Vec<&str> = analysis
            .candidates
            .iter()
            .map(|c| c.node_id.as_str())
            .collect();
        assert_eq!(ids, ["nMineCNTRL"]);
        assert_eq!(analysis.candidates[0].confidence, Confidence::Strong);
    }

    /// Red-team finding F13: a join logged under an actor of another type (a node, an
    /// automated worker) removed the device from every ranking. Only another key, or another
    /// user for a user-owned key, drops it; any other actor leaves it ranked as the device
    /// list alone ranks it, saying the actor was not recognised.
    #[test]
    fn issue_13_an_unrecognised_audit_actor_does_not_hide_a_device() {
        let at = datetime!(2030-02-01 00:00 UTC);
        let tailnet_owned = key(None, &["tag:ci"], true);
        let w = Window::of(&tailnet_owned, None, datetime!(2030-03-01 00:00 UTC));
        let devices = [
            device("nNodeCNTRL", &["tag:ci"], at),
            device("nWorkerCNTRL", &["tag:ci"], at),
            device("nUserCNTRL", &["tag:ci"], at),
            device("nOtherKeyCNTRL", &["tag:ci"], at),
            device("nClientCNTRL", &["tag:ci"], at),
        ];
        let events = vec![
            create_event("nNodeCNTRL", "nNodeCNTRL", "NODE", at),
            create_event("nWorkerCNTRL", "wrk-123", "AUTOMATED_WORKER", at),
            create_event("nUserCNTRL", "uSomeone1CNTRL", "USER", at),
            create_event("nOtherKeyCNTRL", "kOther12CNTRL", "NODE", at),
            create_event("nClientCNTRL", "kClient1CNTRL", "OAUTH_CLIENT", at),
        ];
        let context = Context {
            owner_login: None,
            audit: Some(&events),
            since: None,
        };
        let blind = Context {
            audit: None,
            ..context
        };
        let seen = analyze(&tailnet_owned, &w, &devices, &context, &Expected::default());
        let alone = analyze(&tailnet_owned, &w, &devices, &blind, &Expected::default());
        let rank_of = |a: &Analysis, node: &str| {
            a.candidates
                .iter()
                .find(|c| c.node_id == node)
                .map(|c| (c.confidence, c.evidence.clone()))
        };
        for node in ["nNodeCNTRL", "nWorkerCNTRL", "nUserCNTRL"] {
            let (confidence, evidence) = rank_of(&seen, node).unwrap_or_else(|| {
                panic!("{node} was dropped: {:?}", seen.candidates);
            });
            assert!(confidence >= rank_of(&alone, node).expect("listed alone").0);
            assert!(
                evidence.iter().any(|e| e.contains("not recognised")),
                "{node}: {evidence:?}"
            );
        }
        assert!(rank_of(&seen, "nOtherKeyCNTRL").is_none(), "another key");
        let (_, client) = rank_of(&seen, "nClientCNTRL").expect("the owner's OAuth client");
        assert!(
            client
                .iter()
                .any(|e| e.contains("consistent with the key's owner"))
        );

        // A user-owned key's joins are logged under its owner: another user is dropped, a
        // node or a worker is not.
        let user_owned = key(Some("uAlice1CNTRL"), &["tag:ci"], true);
        let seen = analyze(&user_owned, &w, &devices, &context, &Expected::default());
        assert!(rank_of(&seen, "nUserCNTRL").is_none(), "another user");
        assert!(rank_of(&seen, "nNodeCNTRL").is_some());
        assert!(rank_of(&seen, "nWorkerCNTRL").is_some());
        assert!(rank_of(&seen, "nClientCNTRL").is_some());
    }

    #[test]
    fn devices_the_audit_log_gives_to_someone_else_are_dropped() {
        let k = key(None, &["tag:ci"], true);
        let w = Window::of(&k, None, datetime!(2030-03-01 00:00 UTC));
        let d = device("nOtherCNTRL", &["tag:ci"], datetime!(2030-02-01 00:00 UTC));
        let events = vec![create_event(
            "nOtherCNTRL",
            "kOther12CNTRL",
            "AUTOMATED_WORKER",
            datetime!(2030-02-01 00:00 UTC),
        )];
        let context = Context {
            owner_login: None,
            audit: Some(&events),
            since: None,
        };
        assert!(
            analyze(&k, &w, &[d], &context, &Expected::default())
                .candidates
                .is_empty()
        );
    }
}
