//! [`EmulatorState`]: the shared, mutex-guarded store behind every route, and the bootstrap
//! credentials.
//!
//! A mutation runs under the store lock and, when a state file is configured, is saved before
//! the lock is released, so the file always reflects a prefix of the answered requests.

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    Bootstrap, Options,
    audit_log::AuditEvent,
    clock::Clock,
    devices::DeviceRecord,
    error::{ApiError, Error},
    exchange::ExchangeRecord,
    faults::Faults,
    issuer::SigningKey,
    model::{KeyRecord, KeyType, WebhookRecord},
    persist,
    request_log::RequestLog,
    secret,
};

/// User ID of the emulated tailnet's admin, who owns the bootstrap credentials.
pub const ADMIN_USER_ID: &str = "uAdmin1CNTRL";

/// Tags of the bootstrap OAuth client.
pub const BOOTSTRAP_CLIENT_TAGS: [&str; 3] = ["tag:ci", "tag:server", "tag:k8s"];

/// Longest lifetime Tailscale allows for auth keys and API access tokens: 90 days.
pub(crate) const MAX_EXPIRY_SECONDS: i64 = 90 * 86_400;

/// How `GET /keys/{id}` answers for a revoked, expired or used-up key. Tailscale has been
/// observed doing both; the spec documents `invalid: true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeletedKeys {
    /// 200 with `invalid: true` (and `revoked` when deleted).
    #[default]
    Invalid,
    /// 404 `{"message": "key not found"}`.
    NotFound,
}

/// Behaviour switches set through `POST /_emulator/config`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default)]
    pub(crate) deleted_keys: DeletedKeys,
}

/// Everything that survives a restart when a state file is configured.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Store {
    pub(crate) tailnet: String,
    pub(crate) clock: Clock,
    pub(crate) config: Config,
    /// Every key ever created, in creation order, including revoked ones.
    pub(crate) keys: Vec<KeyRecord>,
    /// Every webhook ever created, in creation order, including deleted ones.
    pub(crate) webhooks: Vec<WebhookRecord>,
    /// The tailnet's devices (deleted ones are gone).
    #[serde(default)]
    pub(crate) devices: Vec<DeviceRecord>,
    /// The configuration audit log, in insertion order (not necessarily chronological).
    #[serde(default)]
    pub(crate) audit: Vec<AuditEvent>,
}

impl Store {
    /// `-` or the tailnet's own name; anything else is 404 like an unknown tailnet upstream.
    pub(crate) fn check_tailnet(&self, tailnet: &str) -> Result<(), ApiError> {
        if tailnet == "-" || tailnet == self.tailnet {
            Ok(())
        } else {
            Err(ApiError::NotFound("tailnet not found"))
        }
    }

    pub(crate) fn key(&self, id: &str) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub(crate) fn key_mut(&mut self, id: &str) -> Option<&mut KeyRecord> {
        self.keys.iter_mut().find(|k| k.id == id)
    }

    /// A key ID not used by any key or webhook secret yet.
    pub(crate) fn unused_key_id(&self) -> String {
        loop {
            let id = secret::new_key_id();
            let taken = self.keys.iter().any(|k| k.id == id)
                || self.webhooks.iter().any(|w| w.secret_id == id);
            if !taken {
                return id;
            }
        }
    }
}

/// The plaintext bootstrap credentials.
///
/// # Security
///
/// These are the one deliberate exception to "hashes only": the emulator's contract is to print
/// the same bootstrap credentials on every start, so they are kept in memory and written in the
/// state file's `bootstrap` section. The key store itself holds only their hashes, like every
/// other credential's. Credentials created through the API are never written in plaintext.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BootstrapSecrets {
    pub(crate) api_key: String,
    pub(crate) oauth_client_id: String,
    pub(crate) oauth_client_secret: String,
}

impl fmt::Debug for BootstrapSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapSecrets")
            .field("oauth_client_id", &self.oauth_client_id)
            .finish_non_exhaustive()
    }
}

struct Shared {
    store: Mutex<Store>,
    /// The emulator's own test OIDC issuer key (`/_emulator/oidc`); new on every start.
    issuer: SigningKey,
    /// Token exchanges and why each was refused (`/_emulator/token-exchanges`).
    exchanges: Mutex<Vec<ExchangeRecord>>,
    state_file: Option<PathBuf>,
    bootstrap: BootstrapSecrets,
    faults: Faults,
    requests: RequestLog,
    /// With [`crate::Exposure::Network`]: the token every admin route needs. Never saved.
    admin_token: Option<String>,
}

/// The emulator's state: keys, webhooks, clock, configuration, fault rules and request log.
///
/// Cheap to clone (an `Arc`). Build one with [`EmulatorState::new`] and hand it to
/// [`crate::app`] for in-process tests, or let [`crate::serve`] build it.
#[derive(Clone)]
pub struct EmulatorState {
    inner: Arc<Shared>,
}

impl fmt::Debug for EmulatorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorState")
            .field("tailnet", &self.tailnet())
            .field("state_file", &self.inner.state_file)
            .finish_non_exhaustive()
    }
}

impl EmulatorState {
    /// Loads the state file named in `options`, or creates a fresh tailnet with new random
    /// bootstrap credentials (and saves it right away when a state file is configured, so the
    /// credentials printed now are the ones a restart will use).
    pub fn new(options: &Options) -> Result<Self, Error> {
        let loaded = match &options.state_file {
            Some(path) => persist::load(path)?,
            None => None,
        };
        let (bootstrap, store) = if let Some((bootstrap, store)) = loaded {
            if store.tailnet != options.tailnet {
                return Err(Error::TailnetMismatch {
                    path: options.state_file.clone().unwrap_or_default(),
                    found: store.tailnet,
                    requested: options.tailnet.clone(),
                });
            }
            (bootstrap, store)
        } else {
            let (bootstrap, store) = fresh(&options.tailnet);
            if let Some(path) = &options.state_file {
                persist::save(path, &bootstrap, &store)?;
            }
            (bootstrap, store)
        };
        tracing::debug!(
            tailnet = %store.tailnet,
            keys = store.keys.len(),
            oauth_client_id = %bootstrap.oauth_client_id,
            "emulator state ready"
        );
        Ok(Self {
            inner: Arc::new(Shared {
                store: Mutex::new(store),
                issuer: SigningKey::generate(&format!("emulator-{}", secret::new_key_id())),
                exchanges: Mutex::new(Vec::new()),
                state_file: options.state_file.clone(),
                bootstrap,
                faults: Faults::default(),
                requests: RequestLog::default(),
                admin_token: match options.exposure {
                    crate::Exposure::Loopback => None,
                    crate::Exposure::Network => Some(crate::guard::new_admin_token()),
                },
            }),
        })
    }

    /// The token admin routes need, when the emulator serves the network.
    pub(crate) fn admin_token(&self) -> Option<&str> {
        self.inner.admin_token.as_deref()
    }

    /// The bootstrap credentials, with `url` as the base URL clients should use.
    #[must_use]
    pub fn bootstrap(&self, url: &str) -> Bootstrap {
        let secrets = &self.inner.bootstrap;
        Bootstrap {
            url: url.to_owned(),
            tailnet: self.tailnet(),
            api_key: secrets.api_key.clone(),
            oauth_client_id: secrets.oauth_client_id.clone(),
            oauth_client_secret: secrets.oauth_client_secret.clone(),
            admin_token: self.inner.admin_token.clone(),
        }
    }

    /// The tailnet's name (the value accepted in `{tailnet}` besides `-`).
    #[must_use]
    pub fn tailnet(&self) -> String {
        self.lock().tailnet.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic in a handler must not take the whole emulator down with it.
        self.inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the store at the current emulator time, without changing anything.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Store, OffsetDateTime) -> T) -> T {
        let store = self.lock();
        let now = store.clock.now();
        f(&store, now)
    }

    /// Runs `f` on the store and, if it succeeds, saves the state file. `f` must validate
    /// before it changes anything: an `Err` is not rolled back.
    pub(crate) fn mutate<T>(
        &self,
        f: impl FnOnce(&mut Store, OffsetDateTime) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut store = self.lock();
        let now = store.clock.now();
        let out = f(&mut store, now)?;
        if let Some(path) = &self.inner.state_file {
            persist::save(path, &self.inner.bootstrap, &store).map_err(|error| {
                let source = std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                ApiError::Internal(format!("{error}: {source}"))
            })?;
        }
        Ok(out)
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    pub(crate) fn requests(&self) -> &RequestLog {
        &self.inner.requests
    }

    /// The signing key of the test OIDC issuer served under `/_emulator/oidc`.
    pub(crate) fn issuer_key(&self) -> &SigningKey {
        &self.inner.issuer
    }

    pub(crate) fn record_exchange(&self, record: ExchangeRecord) {
        self.inner
            .exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    pub(crate) fn exchanges(&self) -> Vec<ExchangeRecord> {
        self.inner
            .exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A new tailnet with a bootstrap API access token and OAuth client owned by the admin.
fn fresh(tailnet: &str) -> (BootstrapSecrets, Store) {
    let clock = Clock::default();
    let now = clock.now();
    let mut store = Store {
        tailnet: tailnet.to_owned(),
        clock,
        config: Config::default(),
        keys: Vec::new(),
        webhooks: Vec::new(),
        devices: Vec::new(),
        audit: Vec::new(),
    };

    let token_id = store.unused_key_id();
    let api_key = secret::new_credential("api", &token_id);
    let mut token = KeyRecord::new(token_id, KeyType::Api, now);
    token.secret_sha256 = Some(secret::sha256_hex(&api_key));
    "emulator bootstrap token".clone_into(&mut token.description);
    token.expiry_seconds = Some(MAX_EXPIRY_SECONDS);
    token.expires = Some(now + time::Duration::seconds(MAX_EXPIRY_SECONDS));
    ADMIN_USER_ID.clone_into(&mut token.user_id);
    token.scopes = vec!["all".to_owned()];
    store.keys.push(token);

    let client_id = store.unused_key_id();
    let client_secret = secret::new_credential("client", &client_id);
    let mut client = KeyRecord::new(client_id.clone(), KeyType::Client, now);
    client.secret_sha256 = Some(secret::sha256_hex(&client_secret));
    "emulator bootstrap client".clone_into(&mut client.description);
    ADMIN_USER_ID.clone_into(&mut client.user_id);
    client.scopes = vec!["all".to_owned()];
    client.tags = BOOTSTRAP_CLIENT_TAGS.map(str::to_owned).to_vec();
    store.keys.push(client);

    let bootstrap = BootstrapSecrets {
        api_key,
        oauth_client_id: client_id,
        oauth_client_secret: client_secret,
    };
    (bootstrap, store)
}
