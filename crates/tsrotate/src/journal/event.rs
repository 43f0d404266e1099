//! The records of a rotation journal. Only IDs, fingerprints, paths and messages: no secrets.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::api::Key;
use crate::key::{Fingerprint, KeyId};
use crate::sink::SinkSpec;

/// Everything a rotation decided before its first side effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    /// The rotation's ID, also written into the description of every key it mints.
    pub rotation_id: String,
    /// The tailnet, as the API client names it.
    pub tailnet: String,
    /// Who ran it (the OS user).
    pub user: String,
    /// The managed credential of the configuration, when it rotates one.
    #[serde(default)]
    pub credential: Option<String>,
    /// The key being replaced.
    pub old: OldKey,
    /// What the replacement will be.
    pub template: Template,
    /// Where the old key was found; `resume` searches these again.
    #[serde(with = "super::path::many")]
    pub roots: Vec<PathBuf>,
    /// Each of `roots` as the plan resolved it (links followed), in the same order. `resume`
    /// searches a root again only while it still resolves to the same folder: a root (or a
    /// folder above it) swapped for a link since would otherwise add files outside the tree
    /// to the rotation. Empty in journals from before it was recorded.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "super::path::many"
    )]
    pub resolved_roots: Vec<PathBuf>,
    /// The places to write, as planned.
    pub sinks: Vec<SinkPlan>,
    /// Revoke the old key before anything else (it is being abused right now).
    pub revoke_first: bool,
    /// `--verify-cmd`, by its digest: the command itself is not kept (it may hold a token),
    /// and a journal is never trusted to say what to run. `resume` takes the command again
    /// from its own command line and runs it only if the digest matches.
    pub verify_cmd: Option<CommandDigest>,
    /// The `verify` command of each managed credential whose places the rotation writes, as
    /// configured when it started; `resume` runs them only while the configuration still
    /// says the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_verify: Vec<CredentialVerify>,
    /// Places known to hold (or perhaps hold) the old key that the rotation does not update,
    /// as the plan named them (`--skip-unwritable`): a finished rotation must not claim that
    /// every place holds the new key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_updated: Vec<String>,
}

/// A managed credential's `verify`: must pass with the new key before the old one is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialVerify {
    /// The credential's name in the configuration.
    pub credential: String,
    /// The program and its arguments.
    pub run: Vec<String>,
}

/// The SHA-256 of a shell command line, `sha256:<hex>`: enough to tell that a command given
/// again is the one a rotation started with, without keeping the command.
///
/// Journals written before digests were kept hold the command itself; it reads as its digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CommandDigest(String);

impl CommandDigest {
    /// The digest of `command`.
    #[must_use]
    pub fn of(command: &str) -> Self {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(command.as_bytes());
        let hex: String = hash.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
            s
        });
        Self(format!("sha256:{hex}"))
    }

    /// Whether `command` is the command this digest was taken of.
    #[must_use]
    pub fn matches(&self, command: &str) -> bool {
        *self == Self::of(command)
    }
}

impl std::fmt::Display for CommandDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CommandDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let is_digest = text.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        Ok(if is_digest {
            Self(text)
        } else {
            Self::of(&text)
        })
    }
}

/// The key being replaced, as it was when the rotation started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OldKey {
    /// Its key ID.
    pub key_id: KeyId,
    /// Its kind (`auth-key`, `oauth-client`, ...).
    pub kind: String,
    /// The fingerprint of the value given, when the value was given.
    pub fingerprint: Option<Fingerprint>,
    /// What the API said of it, when it answered.
    pub metadata: Option<Key>,
}

/// What the replacement is and how it comes to be, per kind of credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Template {
    /// A twin auth key, minted through the API.
    AuthKey(AuthKeyTemplate),
    /// A new OAuth client with the same scopes and tags; the old one is deleted.
    OauthClient(ClientTemplate),
    /// A personal API access token made by a person in the admin console (the API cannot
    /// create one); tsrotate takes it, checks it, and puts it in place.
    ApiToken(TokenTemplate),
    /// A new signing secret from the webhook's rotate endpoint, which retires the old one.
    WebhookSecret {
        /// The webhook's endpoint ID.
        endpoint_id: String,
    },
}

impl Template {
    /// The description new keys get before the rotation marker is added.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        match self {
            Self::AuthKey(t) => t.description.as_deref(),
            Self::OauthClient(t) => t.description.as_deref(),
            Self::ApiToken(t) => t.description.as_deref(),
            Self::WebhookSecret { .. } => None,
        }
    }

    /// Whether minting the replacement already retires the old value (webhook rotation), so
    /// there is nothing to revoke afterwards.
    #[must_use]
    pub fn mint_retires_old(&self) -> bool {
        matches!(self, Self::WebhookSecret { .. })
    }

    /// Whether keys minted by an interrupted run can be found by their description.
    #[must_use]
    pub fn sweepable(&self) -> bool {
        matches!(self, Self::AuthKey(_) | Self::OauthClient(_))
    }
}

/// The properties of a replacement OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTemplate {
    /// Scopes it may grant.
    pub scopes: Vec<String>,
    /// Tags it may assign.
    pub tags: Vec<String>,
    /// Its description, before the rotation marker is added.
    pub description: Option<String>,
    /// When migrating from an API access token: the token being replaced by this client.
    #[serde(default)]
    pub migrated_from: Option<KeyId>,
}

/// What the person is asked to make in the admin console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenTemplate {
    /// The old token's lifetime in days, suggested for the new one.
    pub expiry_days: Option<i64>,
    /// The old token's description.
    pub description: Option<String>,
}

/// The properties of the replacement auth key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthKeyTemplate {
    /// Can register more than one device.
    pub reusable: bool,
    /// Devices are removed when they go offline.
    pub ephemeral: bool,
    /// Devices skip approval.
    pub preauthorized: bool,
    /// Device tags.
    pub tags: Vec<String>,
    /// Lifetime in seconds.
    pub expiry_seconds: Option<i64>,
    /// The key's description, before the rotation marker is added.
    pub description: Option<String>,
}

/// One place that holds the credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[allow(
    clippy::large_enum_variant,
    reason = "a handful per rotation, read from the journal once"
)]
pub enum SinkPlan {
    /// A file in which the credential string is replaced where it stands.
    File {
        /// The real file (symlinks resolved), byte for byte.
        #[serde(with = "super::path")]
        path: PathBuf,
        /// The path as the user gave it, for messages.
        display: String,
    },
    /// A place named in the configuration file.
    Configured {
        /// Where and how.
        spec: SinkSpec,
        /// The credential of the configuration it belongs to.
        #[serde(default)]
        credential: Option<String>,
        /// A command run after each write (a reload), with the value in `TSROTATE_NEW_KEY`.
        #[serde(default)]
        after: Vec<String>,
        /// A command that must succeed before the old key is revoked.
        #[serde(default)]
        verify: Vec<String>,
        /// The key this place held when the rotation was planned, if it could be read.
        #[serde(default)]
        held_at_plan: Option<KeyId>,
        /// For a place in a file: the canonical path the plan resolved its path to. Every
        /// later run reads and writes that path without following any link, and refuses
        /// when the configured path no longer resolves to it (issue 11 item 3).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "super::path::optional"
        )]
        resolved: Option<PathBuf>,
    },
}

impl SinkPlan {
    /// A name for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::File { display, .. } => display.clone(),
            Self::Configured { spec, .. } => crate::sink::describe(spec),
        }
    }
}

/// One journal record.
#[allow(
    clippy::large_enum_variant,
    reason = "written once per step; boxing buys nothing"
)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The plan, first in every journal.
    Started(Box<Started>),
    /// About to create a replacement key with this description.
    MintIntent {
        /// 1 for the first mint, more after a resume.
        attempt: u32,
        /// The description sent, which carries the rotation ID.
        description: String,
    },
    /// A replacement exists. Its secret lives only in the memory of the process that minted it.
    Minted {
        /// Which attempt.
        attempt: u32,
        /// The new key's ID.
        key_id: KeyId,
        /// The new value's fingerprint.
        fingerprint: Fingerprint,
        /// What the API said of it.
        metadata: Option<Key>,
    },
    /// Minting failed.
    MintFailed {
        /// Which attempt.
        attempt: u32,
        /// Why.
        error: String,
        /// The request may have created a key anyway (its answer was lost).
        outcome_unknown: bool,
    },
    /// About to write the key into a sink.
    WriteIntent {
        /// Index into `Started::sinks`.
        sink: usize,
        /// The key being written.
        key_id: KeyId,
    },
    /// The sink holds the key (read back where the sink allows).
    Written {
        /// Index into `Started::sinks`.
        sink: usize,
        /// The key written.
        key_id: KeyId,
    },
    /// Writing a sink failed; the rotation stops before revocation.
    WriteFailed {
        /// Index into `Started::sinks`.
        sink: usize,
        /// The key that was being written.
        key_id: KeyId,
        /// Why.
        error: String,
    },
    /// A sink found by `resume` that the plan did not have.
    SinkAdded {
        /// The sink.
        sink: SinkPlan,
    },
    /// About to run the verification command.
    VerifyIntent {
        /// The key being verified.
        key_id: KeyId,
    },
    /// The verification command succeeded.
    Verified {
        /// The key verified.
        key_id: KeyId,
    },
    /// The verification command failed; the rotation stops before revocation.
    VerifyFailed {
        /// The key.
        key_id: KeyId,
        /// Why.
        error: String,
    },
    /// About to revoke a key.
    RevokeIntent {
        /// The key.
        key_id: KeyId,
    },
    /// The key is dead: deleted, and the API confirms it.
    Revoked {
        /// The key.
        key_id: KeyId,
        /// It was dead before we asked.
        already: bool,
    },
    /// The API does not know the old key and never did during this rotation (it may be
    /// another tailnet's): it could not be revoked here and may still be live.
    NotInTailnet {
        /// The key.
        key_id: KeyId,
    },
    /// Revoking failed.
    RevokeFailed {
        /// The key.
        key_id: KeyId,
        /// Why.
        error: String,
    },
    /// Keys minted by this rotation found in the tailnet by their description.
    Swept {
        /// Their IDs.
        found: Vec<KeyId>,
    },
    /// `rollback` began: the old value goes back into the sinks.
    RollbackStarted,
    /// A sink holds the old key again.
    Restored {
        /// Index into `Started::sinks`.
        sink: usize,
    },
    /// Every sink holds the old key and every minted key is revoked.
    RolledBack,
    /// Every sink holds the new key, it is verified, and every other key is revoked.
    Done {
        /// The key that remains.
        key_id: KeyId,
    },
    /// A person settles the rotation's keys by hand (`tsrotate abandon`): it could be neither
    /// finished nor undone. Nothing more happens in it, and it no longer blocks its keys.
    Abandoned {
        /// Who (the OS user).
        by: String,
    },
}
