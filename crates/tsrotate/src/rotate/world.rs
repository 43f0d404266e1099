//! The real world of a rotation: the Tailscale API, the places that hold the key, and the
//! verification commands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::{self, CreateAuthKey, DeviceCreateCapabilities};
use crate::journal::{SinkPlan, Template};
use crate::key::{Fingerprint, KeyId, Secret};
use crate::sink::file::FileMatch;
use crate::sink::keyed::KeyedFile;
use crate::sink::structured::FieldSink;
use crate::sink::{self as sinks, Expect, Logins, Sink, SinkSpec};

use super::engine::{Liveness, MintedKey, Revocation, StepError, World};
use super::state::VerifyCommand;

/// The environment variable that carries the new key to `--verify-cmd` (never argv).
pub const NEW_KEY_ENV: &str = crate::child::NEW_KEY_ENV;

/// How long a verification command may run.
pub const VERIFY_TIMEOUT: Duration = crate::child::DEFAULT_TIMEOUT;

/// The Tailscale API plus the places of one rotation.
pub struct ApiWorld {
    client: api::Client,
    /// What each planned file looked like when the plan was shown: a file that changed since
    /// is not overwritten. Used once per file; later writes re-read the file.
    planned: Mutex<HashMap<PathBuf, FileMatch>>,
    /// What each configured place looked like at the plan, by sink index; used once.
    planned_versions: Mutex<HashMap<usize, Expect>>,
    /// Logins to the services configured places live in.
    credentials: Logins,
    /// Configured places, built on first use.
    built: Mutex<HashMap<usize, Arc<dyn Sink>>>,
    /// An API access token a person made to replace the old one.
    new_token: Option<Secret>,
    /// The key being replaced, for checks on a given replacement.
    old_key_id: Option<KeyId>,
    /// OAuth clients minted by this process, so the API client can switch to one.
    minted_secrets: HashMap<KeyId, Secret>,
    /// `--verify-cmd` as given on this run's command line: the journal keeps only its digest.
    verify_cmd: Option<String>,
    /// Other secrets in play (the old key's value, when known): redacted from children's
    /// output like the new key.
    also_redacted: Vec<Secret>,
}

impl ApiWorld {
    /// A world acting through `client`, guarding the files planned in `planned`.
    #[must_use]
    pub fn new(client: api::Client, planned: Vec<FileMatch>) -> Self {
        Self {
            client,
            planned: Mutex::new(planned.into_iter().map(|m| (m.path.clone(), m)).collect()),
            planned_versions: Mutex::new(HashMap::new()),
            credentials: Logins::default(),
            built: Mutex::new(HashMap::new()),
            new_token: None,
            old_key_id: None,
            minted_secrets: HashMap::new(),
            verify_cmd: None,
            also_redacted: Vec::new(),
        }
    }

    /// Also redact `values` from children's output (the old key's value, when known).
    #[must_use]
    pub fn with_redacted(mut self, values: Vec<Secret>) -> Self {
        self.also_redacted.extend(values);
        self
    }

    /// Also redact the old key's values as the files among `sinks` hold them now. A
    /// rotation by key ID reads them only to replace them, yet the old key is live while
    /// verification runs, so a child that prints it must not show it (red-team finding).
    #[must_use]
    pub fn redacting_old_values(mut self, old: &KeyId, sinks: &[SinkPlan]) -> Self {
        for sink in sinks {
            let Some(place) = keyed(sink) else {
                continue;
            };
            if let Ok(Some(value)) = place.value_of(old)
                && !self
                    .also_redacted
                    .iter()
                    .any(|v| v.fingerprint() == value.fingerprint())
            {
                self.also_redacted.push(value);
            }
        }
        self
    }

    /// With the `--verify-cmd` of this run's command line. A journal names its command by
    /// digest only, and nothing else is ever run for it.
    #[must_use]
    pub fn with_verify_cmd(mut self, command: Option<String>) -> Self {
        self.verify_cmd = command;
        self
    }

    /// With the replacement API access token a person made (API tokens cannot be minted).
    #[must_use]
    pub fn with_new_token(mut self, token: Secret, old_key_id: KeyId) -> Self {
        self.new_token = Some(token);
        self.old_key_id = Some(old_key_id);
        self
    }

    /// With credentials for configured places, and what they looked like at the plan.
    #[must_use]
    pub fn with_configured(
        mut self,
        credentials: Logins,
        planned_versions: HashMap<usize, Expect>,
    ) -> Self {
        self.credentials = credentials;
        self.planned_versions = Mutex::new(planned_versions);
        self
    }

    /// The configured place `index`, built on first use. A place in a file is pinned to the
    /// canonical path its plan resolved (`resolved`, from the journal): read and written
    /// without following any link, in this run and every later one.
    fn sink(
        &self,
        index: usize,
        spec: &SinkSpec,
        resolved: Option<&Path>,
    ) -> Result<Arc<dyn Sink>, StepError> {
        let mut built = self.built.lock().expect("sink cache lock");
        if let Some(s) = built.get(&index) {
            return Ok(s.clone());
        }
        let sink: Arc<dyn Sink> = match (FieldSink::for_spec(spec), resolved) {
            (Some(place), Some(canonical)) => {
                Arc::new(place.map_err(StepError::sink)?.pinned(canonical.to_owned()))
            }
            _ => Arc::from(sinks::build(spec, &self.credentials).map_err(StepError::sink)?),
        };
        built.insert(index, sink.clone());
        Ok(sink)
    }

    /// The place a file found with `--in` is: as the plan found it, the first time in the
    /// process that planned it; by the canonical path its journal records otherwise.
    fn found_file(&self, path: &Path, display: &str) -> KeyedFile {
        match self.planned.lock().expect("plan lock").remove(path) {
            Some(planned) => KeyedFile::found(planned),
            None => KeyedFile::planned(path.to_owned(), display.to_owned()),
        }
    }

    /// What key `key_id`'s value is in a place now, if the place can say; `None` when it
    /// holds another key or nothing. `rollback` asks this for the old key's value before
    /// asking a person.
    pub async fn value_held(
        &self,
        index: usize,
        sink: &SinkPlan,
        key_id: &KeyId,
    ) -> Result<Option<Secret>, StepError> {
        if let Some(place) = keyed(sink) {
            let id = key_id.clone();
            return blocking(move || place.value_of(&id)).await;
        }
        let SinkPlan::Configured { spec, resolved, .. } = sink else {
            return Ok(None);
        };
        let place = self.sink(index, spec, resolved.as_deref())?;
        if !place.readable() {
            return Ok(None);
        }
        Ok(place
            .read()
            .await
            .map_err(StepError::sink)?
            .value
            .filter(|v| {
                crate::key::Credential::parse(v.expose_secret()).is_ok_and(|c| c.key_id() == key_id)
            }))
    }

    /// Take the API access token a person made in the admin console, and check that it works
    /// and belongs to the same tailnet.
    async fn take_new_token(&mut self) -> Result<MintedKey, StepError> {
        let Some(token) = self.new_token.clone() else {
            return Err(StepError::new(
                "API access tokens cannot be created through the API: make the new one in the admin console and give it with --new-key-file",
            ));
        };
        let credential = crate::key::Credential::parse(token.expose_secret())
            .map_err(|e| StepError::new(format!("the new token: {e}")))?;
        if credential.kind() != &crate::key::KeyKind::ApiAccessToken {
            return Err(StepError::new(format!(
                "the new token is a {}, not an API access token",
                credential.kind()
            )));
        }
        let probe = self
            .client
            .with_auth(api::Auth::ApiAccessToken(token.clone()));
        let own = probe
            .get_key(credential.key_id())
            .await
            .map_err(|e| StepError::api(e).context("the new token does not work"))?;
        if own.invalid {
            return Err(StepError::new("the new token is already invalid"));
        }
        // Same tailnet: the new token can see the tailnet's keys, including the old token.
        if let Some(old) = &self.old_key_id {
            match probe.get_key(old).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    return Err(StepError::new(format!(
                        "the new token cannot see key {old}: it belongs to another tailnet or user"
                    )));
                }
                Err(e) => return Err(StepError::api(e).context("checking the new token")),
            }
        }
        Ok(MintedKey {
            key_id: credential.key_id().clone(),
            secret: token,
            metadata: Some(own),
        })
    }

    /// Create a replacement OAuth client and prove it can get a token.
    async fn mint_client(
        &mut self,
        t: &crate::journal::ClientTemplate,
        description: &str,
    ) -> Result<MintedKey, StepError> {
        let request = api::OAuthClientRequest {
            key_type: api::KeyType::Client,
            scopes: t.scopes.clone(),
            tags: t.tags.clone(),
            description: Some(description.to_owned()),
        };
        let created = self
            .client
            .create_oauth_client(&request)
            .await
            .map_err(api_step_error)?;
        // A client that cannot get a token is useless to its consumers; the sweep revokes it.
        self.client
            .check_oauth_client(created.key.id.as_str(), &created.secret)
            .await
            .map_err(|e| {
                // The client exists: the journal must not count this mint as answered
                // without a key, so the sweep looks for it.
                let mut error = StepError::api(e).context(format!(
                    "the new OAuth client {} cannot get a token",
                    created.key.id
                ));
                error.outcome_unknown = true;
                error
            })?;
        self.minted_secrets
            .insert(created.key.id.clone(), created.secret.clone());
        Ok(MintedKey {
            key_id: created.key.id.clone(),
            secret: created.secret,
            metadata: Some(created.key),
        })
    }

    /// If the API client authenticates with `key_id`, switch it to a replacement this run
    /// minted or was given.
    fn switch_away_from(&mut self, key_id: &KeyId) -> Result<(), StepError> {
        let uses_it = match self.client.auth() {
            api::Auth::OAuthClient {
                client_id,
                client_secret,
                ..
            } => {
                client_id == key_id.as_str()
                    || crate::key::Credential::parse(client_secret.expose_secret())
                        .is_ok_and(|c| c.key_id() == key_id)
            }
            api::Auth::ApiAccessToken(token) => {
                crate::key::Credential::parse(token.expose_secret())
                    .is_ok_and(|c| c.key_id() == key_id)
            }
            // A federated identity has no secret to rotate; revoking another key never
            // touches it.
            api::Auth::Federated { .. } => false,
        };
        if !uses_it {
            return Ok(());
        }
        let auth = match self.client.auth() {
            api::Auth::OAuthClient { scopes, .. } => {
                let Some((id, secret)) = self.minted_secrets.iter().find(|(id, _)| *id != key_id)
                else {
                    return Err(StepError::new(format!(
                        "tsrotate authenticates with {key_id}, and no replacement is at hand to switch to; set TAILSCALE_OAUTH_CLIENT_SECRET to the new client and resume"
                    )));
                };
                api::Auth::OAuthClient {
                    client_id: id.to_string(),
                    client_secret: secret.clone(),
                    scopes: scopes.clone(),
                }
            }
            api::Auth::ApiAccessToken(_) => match &self.new_token {
                Some(token) => api::Auth::ApiAccessToken(token.clone()),
                None => {
                    return Err(StepError::new(format!(
                        "tsrotate authenticates with {key_id}; set TAILSCALE_API_KEY to its replacement and resume"
                    )));
                }
            },
            api::Auth::Federated { .. } => return Ok(()),
        };
        self.client = self.client.with_auth(auth);
        tracing::info!("switched the API client away from {key_id} before revoking it");
        Ok(())
    }

    /// Write a configured place: check that it holds a key of this rotation (or nothing),
    /// write with check-and-set, read back, then run its `after` command.
    async fn write_configured(
        &self,
        index: usize,
        sink: &SinkPlan,
        replace: &[KeyId],
        value: &Secret,
    ) -> Result<(), StepError> {
        let SinkPlan::Configured {
            spec,
            after,
            resolved,
            ..
        } = sink
        else {
            unreachable!("called for configured places only");
        };
        // A `type = "file"` place that holds the key among other text is edited in place, by
        // key ID, like a file found with `--in`.
        if let Some(place) = keyed(sink) {
            let ids = replace.to_vec();
            let holds_inside = blocking(move || Ok((place.holds_key_inside(&ids), place))).await?;
            if let (true, place) = holds_inside {
                let (ids, owned) = (replace.to_vec(), value.clone());
                blocking(move || place.write(&ids, &owned)).await?;
                return self.run_after(after, value).await;
            }
        }
        let sink = self.sink(index, spec, resolved.as_deref())?;
        let planned = self
            .planned_versions
            .lock()
            .expect("plan lock")
            .remove(&index);
        let expect = match planned {
            Some(expect) => expect,
            None if sink.readable() => {
                let snapshot = sink.read().await.map_err(StepError::sink)?;
                check_holds_ours(sink.as_ref(), snapshot.value.as_ref(), replace, value)?;
                Expect::from_snapshot(&snapshot)
            }
            None => Expect::Unchecked,
        };
        sink.write(value, &expect).await.map_err(StepError::sink)?;
        if sink.readable() {
            let back = sink
                .read()
                .await
                .map_err(|e| StepError::sink(e).context("reading back"))?;
            if back.value.as_ref().map(Secret::fingerprint) != Some(value.fingerprint()) {
                return Err(StepError::new(format!(
                    "{} does not hold the new value after writing it",
                    sink.describe()
                )));
            }
        }
        self.run_after(after, value).await
    }

    /// Every secret this world holds besides `value`: tsrotate's own API credential, the
    /// places' credentials, keys it minted. All are redacted from a child's output.
    fn secrets_in_play<'a>(&'a self, value: &'a Secret) -> Vec<&'a Secret> {
        let mut secrets = vec![value];
        secrets.extend(self.client.auth().secrets());
        secrets.extend(self.minted_secrets.values());
        secrets.extend(self.new_token.as_ref());
        secrets.extend(&self.also_redacted);
        secrets
    }

    /// Run one child with the new key, in the cleaned environment, its output redacted.
    async fn run_child(
        &self,
        role: &str,
        program: crate::child::Program<'_>,
        value: &Secret,
    ) -> Result<(), StepError> {
        let mut others = self.credentials.secrets();
        others.extend(self.client.auth().secrets_read_now());
        let redactor =
            crate::child::Redactor::new(self.secrets_in_play(value).into_iter().chain(&others));
        // Boxed: a child's future is large, and every step that may run one awaits it.
        Box::pin(crate::child::run(crate::child::Child {
            role,
            program,
            new_key: value,
            stdin: false,
            env: &self.credentials.child_env,
            redactor: &redactor,
            timeout: VERIFY_TIMEOUT,
        }))
        .await
        .map_err(|e| StepError::command(e.to_string()))
    }

    /// Run a place's `after` command (a reload) with the new key in its environment.
    async fn run_after(&self, after: &[String], value: &Secret) -> Result<(), StepError> {
        if after.is_empty() {
            return Ok(());
        }
        self.run_child("`after` command", crate::child::Program::Argv(after), value)
            .await
    }

    /// The API client.
    #[must_use]
    pub fn client(&self) -> &api::Client {
        &self.client
    }
}

/// An API failure, with advice where the API's words need it.
fn api_step_error(e: api::Error) -> StepError {
    let hint = match &e {
        api::Error::Forbidden { .. } => Some(
            "the credential tsrotate authenticates with lacks the scope named (an OAuth client needs `auth_keys` for auth keys, `oauth_keys` for OAuth clients, `api_access_tokens` for API tokens, `webhooks` for webhook secrets)",
        ),
        api::Error::BadRequest { message } if message.contains("tag") => {
            Some("keys minted by an OAuth client must carry tags the client owns")
        }
        _ => None,
    };
    let error = StepError::api(e);
    match hint {
        Some(hint) => error.hint(hint),
        None => error,
    }
}

impl World for ApiWorld {
    async fn mint(
        &mut self,
        template: &Template,
        description: &str,
    ) -> Result<MintedKey, StepError> {
        match template {
            Template::AuthKey(t) => {
                let mut request = CreateAuthKey::new(DeviceCreateCapabilities {
                    reusable: t.reusable,
                    ephemeral: t.ephemeral,
                    preauthorized: t.preauthorized,
                    tags: t.tags.clone(),
                });
                request.expiry_seconds = t.expiry_seconds;
                request.description = Some(description.to_owned());
                let created = self
                    .client
                    .create_auth_key(&request)
                    .await
                    .map_err(api_step_error)?;
                Ok(MintedKey {
                    key_id: created.key.id.clone(),
                    secret: created.secret,
                    metadata: Some(created.key),
                })
            }
            Template::OauthClient(t) => self.mint_client(t, description).await,
            Template::ApiToken(_) => self.take_new_token().await,
            Template::WebhookSecret { endpoint_id } => {
                let secret = self
                    .client
                    .rotate_webhook_secret(endpoint_id)
                    .await
                    .map_err(api_step_error)?;
                let key_id = crate::key::Credential::parse(secret.expose_secret())
                    .map(|c| c.key_id().clone())
                    .map_err(|_| StepError::new("the webhook rotation returned a secret that is not a `tskey-webhook-` credential"))?;
                Ok(MintedKey {
                    key_id,
                    secret,
                    metadata: None,
                })
            }
        }
    }

    async fn minted_here(&mut self, key_id: &KeyId, rotation_id: &str) -> Result<bool, StepError> {
        match self.client.get_key(key_id).await {
            Ok(key) => Ok(key
                .description
                .as_deref()
                .is_some_and(|d| super::engine::minted_by(d, rotation_id))),
            Err(e) if e.is_not_found() => Ok(true),
            Err(e) => Err(api_step_error(e)),
        }
    }

    async fn find_minted(&mut self, rotation_id: &str) -> Result<Vec<KeyId>, StepError> {
        let keys = self.client.list_keys(true).await.map_err(api_step_error)?;
        let mut found = Vec::new();
        for key in keys {
            // Older API versions list bare IDs; ask for the details then.
            let key = if key.description.is_none() {
                match self.client.get_key(&key.id).await {
                    Ok(k) => k,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(api_step_error(e)),
                }
            } else {
                key
            };
            if !key.invalid
                && key
                    .description
                    .as_deref()
                    .is_some_and(|d| super::engine::minted_by(d, rotation_id))
            {
                found.push(key.id);
            }
        }
        Ok(found)
    }

    async fn write(
        &self,
        index: usize,
        sink: &SinkPlan,
        replace: &[KeyId],
        value: &Secret,
    ) -> Result<(), StepError> {
        match sink {
            SinkPlan::Configured { .. } => self.write_configured(index, sink, replace, value).await,
            SinkPlan::File { path, display } => {
                let place = self.found_file(path, display);
                let (ids, owned) = (replace.to_vec(), value.clone());
                blocking(move || place.write(&ids, &owned)).await
            }
        }
    }

    async fn restore(
        &self,
        index: usize,
        sink: &SinkPlan,
        minted: &[KeyId],
        old_value: &Secret,
    ) -> Result<(), StepError> {
        let held = match (keyed(sink), sink) {
            (Some(place), _) => {
                let ids = minted.to_vec();
                tokio::task::spawn_blocking(move || place.holds_any(&ids))
                    .await
                    .map_err(|e| StepError::new(format!("file work panicked: {e}")))?
            }
            (None, SinkPlan::Configured { spec, resolved, .. }) => {
                let place = self.sink(index, spec, resolved.as_deref())?;
                if place.readable() {
                    place.read().await.map(|snapshot| {
                        snapshot
                            .value
                            .and_then(|v| crate::key::Credential::parse(v.expose_secret()).ok())
                            .is_some_and(|c| minted.contains(c.key_id()))
                    })
                } else {
                    // A write-only place cannot say what it holds: put the old value back.
                    Ok(true)
                }
            }
            (None, SinkPlan::File { .. }) => unreachable!("a found file is a keyed place"),
        };
        let holds_minted = match held {
            Ok(holds) => holds,
            // Nothing is read or written through a link: a place that can no longer be
            // reached as planned is left as it is, like a place that could not be written,
            // and the rollback goes on to revoke what it minted.
            Err(e) if e.kind == sinks::ErrorKind::Redirected => {
                tracing::warn!("{e}; not put back");
                false
            }
            Err(e) => return Err(StepError::sink(e)),
        };
        if !holds_minted {
            tracing::info!(
                "{} holds no key this rotation minted; left as it is",
                sink.describe()
            );
            return Ok(());
        }
        self.write(index, sink, minted, old_value).await
    }

    async fn verify(
        &mut self,
        commands: &[VerifyCommand],
        value: &Secret,
    ) -> Result<(), StepError> {
        for command in commands {
            let program = match command {
                VerifyCommand::Shell(digest) => match &self.verify_cmd {
                    Some(line) if digest.matches(line) => crate::child::Program::Shell(line),
                    _ => {
                        return Err(StepError::new(
                            "the rotation's --verify-cmd was not given to this run (or differs): give the same command again with --verify-cmd",
                        ));
                    }
                },
                VerifyCommand::Program(argv) => crate::child::Program::Argv(argv),
            };
            self.run_child("verification command", program, value)
                .await?;
        }
        Ok(())
    }

    async fn revoke(&mut self, key_id: &KeyId) -> Result<Revocation, StepError> {
        // Never delete the credential this client authenticates with while it still needs
        // it: switch to the replacement first (it was verified when it was taken or minted).
        self.switch_away_from(key_id)?;
        let outcome = match self.client.delete_key(key_id).await {
            Ok(()) => Revocation::Revoked,
            Err(e) if e.is_not_found() => Revocation::NotFound,
            Err(e) => {
                // A delete the API may have acted on (no answer, or a server failure) leaves
                // the key's fate unknown until someone asks.
                let unknown = e.status().is_none_or(|s| s >= 500);
                let mut error = api_step_error(e);
                error.outcome_unknown = unknown;
                return Err(error);
            }
        };
        // Confirm: a revoked key answers 404 or `invalid: true`. A delete sent may have taken
        // effect even when its answer is lost, so an unconfirmed revoke has an unknown outcome.
        match self.client.get_key(key_id).await {
            Err(e) if e.is_not_found() => Ok(outcome),
            Ok(key) if key.invalid || key.revoked.is_some() => Ok(match outcome {
                Revocation::NotFound => Revocation::AlreadyDead,
                other => other,
            }),
            Ok(_) => Err(StepError::new(format!(
                "the API still reports key {key_id} as valid after deleting it"
            ))),
            Err(e) => {
                let mut error = api_step_error(e)
                    .context(format!("could not confirm that key {key_id} is revoked"));
                error.outcome_unknown = true;
                Err(error)
            }
        }
    }

    async fn liveness(&mut self, key_id: &KeyId) -> Result<Liveness, StepError> {
        match self.client.get_key(key_id).await {
            Ok(key) => Ok(
                match super::plan::KeyStatus::of(&key, self.client.server_now()) {
                    super::plan::KeyStatus::Live => Liveness::Live,
                    _ => Liveness::Dead,
                },
            ),
            Err(e) if e.is_not_found() => Ok(Liveness::NotFound),
            Err(e) => Err(api_step_error(e)),
        }
    }

    async fn holds(
        &mut self,
        _index: usize,
        sink: &SinkPlan,
        ids: &[KeyId],
    ) -> Result<Option<bool>, StepError> {
        // Files, found or configured, are read; other places answer for themselves when
        // written, and are not asked here.
        let Some(place) = keyed(sink) else {
            return Ok(None);
        };
        let ids = ids.to_vec();
        blocking(move || place.holds_any(&ids).map(Some)).await
    }

    async fn recover(
        &mut self,
        index: usize,
        sink: &SinkPlan,
        key_id: &KeyId,
        fingerprint: Fingerprint,
    ) -> Result<Option<Secret>, StepError> {
        let found = self.value_held(index, sink, key_id).await?;
        let Some(secret) = found.filter(|s| s.fingerprint() == fingerprint) else {
            return Ok(None);
        };
        // An OAuth client taken back can be what the API client switches to.
        if crate::key::Credential::parse(secret.expose_secret())
            .is_ok_and(|c| c.kind() == &crate::key::KeyKind::OAuthClientSecret)
        {
            self.minted_secrets.insert(key_id.clone(), secret.clone());
        }
        Ok(Some(secret))
    }
}

/// The place edited by key ID that `sink` is, if it is one: a file found with `--in`, or a
/// configured `type = "file"` place (which holds the key inside other text, or is the value:
/// [`KeyedFile::holds_key_inside`] tells).
fn keyed(sink: &SinkPlan) -> Option<KeyedFile> {
    match sink {
        SinkPlan::File { path, display } => Some(KeyedFile::planned(path.clone(), display.clone())),
        SinkPlan::Configured {
            spec: SinkSpec::File { path },
            resolved,
            ..
        } => KeyedFile::configured(path, resolved.as_deref()).ok(),
        SinkPlan::Configured { .. } => None,
    }
}

/// Run file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, sinks::Error> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StepError::new(format!("file work panicked: {e}")))?
        .map_err(StepError::sink)
}

/// A place that holds a credential this rotation does not know was changed by someone else
/// (or is configured wrongly): it is not overwritten.
fn check_holds_ours(
    sink: &dyn Sink,
    current: Option<&Secret>,
    replace: &[KeyId],
    value: &Secret,
) -> Result<(), StepError> {
    let Some(held) = current.and_then(|v| crate::key::Credential::parse(v.expose_secret()).ok())
    else {
        return Ok(());
    };
    let new_id = crate::key::Credential::parse(value.expose_secret())
        .ok()
        .map(|c| c.key_id().clone());
    if replace.contains(held.key_id()) || Some(held.key_id()) == new_id.as_ref() {
        return Ok(());
    }
    Err(StepError::new(format!(
        "{} holds key {}, which this rotation does not know; not overwritten",
        sink.describe(),
        held.key_id()
    )))
}
