//! The real world of a rotation: the Tailscale API, the places that hold the key, and the
//! verification commands.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::{self, CreateAuthKey, DeviceCreateCapabilities};
use crate::journal::{SinkPlan, Template};
use crate::key::{Fingerprint, KeyId, Secret};
use crate::sink::file::{self, FileMatch};
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
    /// The canonical path the plan resolved for each configured place in a file, by sink
    /// index: written without following any link.
    planned_paths: HashMap<usize, PathBuf>,
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
            planned_paths: HashMap::new(),
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
            let path = match sink {
                SinkPlan::File { path, .. }
                | SinkPlan::Configured {
                    spec: SinkSpec::File { path },
                    ..
                } => path,
                SinkPlan::Configured { .. } => continue,
            };
            if let Some(value) = read_value(path, old)
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

    /// With the canonical paths the plan resolved for configured places in files
    /// ([`super::plan::Plan::planned_paths`]): a folder on the way swapped for a link since
    /// the plan is refused instead of written through.
    #[must_use]
    pub fn with_planned_paths(mut self, planned_paths: HashMap<usize, PathBuf>) -> Self {
        self.planned_paths = planned_paths;
        self
    }

    fn sink(&self, index: usize, spec: &SinkSpec) -> Result<Arc<dyn Sink>, StepError> {
        let mut built = self.built.lock().expect("sink cache lock");
        if let Some(s) = built.get(&index) {
            return Ok(s.clone());
        }
        let sink: Arc<dyn Sink> =
            Arc::from(sinks::build(spec, &self.credentials).map_err(StepError::sink)?);
        built.insert(index, sink.clone());
        Ok(sink)
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
        spec: &SinkSpec,
        after: &[String],
        replace: &[KeyId],
        value: &Secret,
    ) -> Result<(), StepError> {
        // A `type = "file"` place that holds the key among other text is edited in place, by
        // key ID, like a file found with `--in`.
        let pinned = self.planned_paths.get(&index);
        if let SinkSpec::File { path } = spec
            && holds_key_inside(path, replace)
        {
            let display = sinks::describe(spec);
            let (target, resolved) = match pinned {
                Some(canonical) => {
                    if crate::fs::resolve_folder(path).ok().as_ref() != Some(canonical) {
                        return Err(StepError::new(format!(
                            "{display}: {}",
                            crate::fs::Error::Redirected { path: path.clone() }
                        )));
                    }
                    (canonical.clone(), true)
                }
                None => (path.clone(), false),
            };
            let (ids, owned) = (replace.to_vec(), value.clone());
            tokio::task::spawn_blocking(move || {
                write_file(&target, &display, None, resolved, &ids, &owned)
            })
            .await
            .map_err(|e| StepError::new(format!("writing a file panicked: {e}")))??;
            return self.run_after(after, value).await;
        }
        let sink: Arc<dyn Sink> = match (pinned, sinks::structured::FieldSink::for_spec(spec)) {
            (Some(canonical), Some(place)) => {
                Arc::new(place.map_err(StepError::sink)?.pinned(canonical.clone()))
            }
            _ => self.sink(index, spec)?,
        };
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
            SinkPlan::Configured { spec, after, .. } => {
                self.write_configured(index, spec, after, replace, value)
                    .await
            }
            SinkPlan::File { path, display } => {
                let path = path.clone();
                let display = display.clone();
                let planned = self.planned.lock().expect("plan lock").remove(&path);
                let replace = replace.to_vec();
                let value = value.clone();
                let shown = display.clone();
                tokio::task::spawn_blocking(move || {
                    write_file(&path, &display, planned, true, &replace, &value)
                })
                .await
                .map_err(|e| StepError::new(format!("writing {shown} panicked: {e}")))?
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
        let holds_minted = match sink {
            SinkPlan::File { path, .. }
            | SinkPlan::Configured {
                spec: SinkSpec::File { path },
                ..
            } => file_holds_any(path, minted)
                .map_err(|e| StepError::new(format!("{}: {e}", sink.describe())))?,
            SinkPlan::Configured { spec, .. } => {
                let place = self.sink(index, spec)?;
                if place.readable() {
                    let snapshot = place.read().await.map_err(StepError::sink)?;
                    snapshot
                        .value
                        .and_then(|v| crate::key::Credential::parse(v.expose_secret()).ok())
                        .is_some_and(|c| minted.contains(c.key_id()))
                } else {
                    // A write-only place cannot say what it holds: put the old value back.
                    true
                }
            }
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

    async fn recover(
        &mut self,
        _index: usize,
        sink: &SinkPlan,
        key_id: &KeyId,
        fingerprint: Fingerprint,
    ) -> Result<Option<Secret>, StepError> {
        let found = match sink {
            SinkPlan::File { path, .. } => {
                let (path, id) = (path.clone(), key_id.clone());
                tokio::task::spawn_blocking(move || read_value(&path, &id))
                    .await
                    .map_err(|e| StepError::new(format!("reading a file panicked: {e}")))?
            }
            SinkPlan::Configured { spec, .. } => {
                if let SinkSpec::File { path } = spec {
                    read_value(path, key_id)
                } else {
                    let place = sinks::build(spec, &self.credentials).map_err(StepError::sink)?;
                    if place.readable() {
                        place
                            .read()
                            .await
                            .map_err(StepError::sink)?
                            .value
                            .filter(|v| {
                                crate::key::Credential::parse(v.expose_secret())
                                    .is_ok_and(|c| c.key_id() == key_id)
                            })
                    } else {
                        None
                    }
                }
            }
        };
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

/// Replace the credentials of `replace` in one file with `value`, then read the file back.
///
/// `resolved`: `path` is the canonical path a plan found (`--in`), so it must still be the
/// canonical path of the file written: a folder on the way swapped for a link since (which
/// re-resolving would follow) is refused rather than written through.
fn write_file(
    path: &std::path::Path,
    display: &str,
    planned: Option<FileMatch>,
    resolved: bool,
    replace: &[KeyId],
    value: &Secret,
) -> Result<(), StepError> {
    // After a restart (or a second write), the file as it is now is the baseline: it can
    // only differ from the plan by credentials this rotation wrote.
    let target = if let Some(m) = planned {
        m
    } else {
        let found = file::locate(&[path.to_path_buf()], replace)
            .map_err(|e| StepError::new(format!("{display}: {e}")))?;
        match found.matches.into_iter().next() {
            Some(m) if resolved && m.path != path => {
                return Err(StepError::new(format!(
                    "{display}: {}",
                    crate::fs::Error::Redirected {
                        path: path.to_owned()
                    }
                )));
            }
            Some(m) => m,
            // Nothing of ours left to replace: the read-back decides whether that is fine.
            None => return read_back(path, display, replace, value),
        }
    };
    file::replace(&target, replace, value)
        .map_err(|e| StepError::new(format!("{display}: {e}")))?;
    // Consumers of an OAuth client (the Kubernetes operator, the GitHub action, Terraform)
    // take its ID apart from its secret: where the old ID stands on its own, it changes too.
    let client = crate::key::Credential::parse(value.expose_secret())
        .ok()
        .filter(|c| c.kind() == &crate::key::KeyKind::OAuthClientSecret);
    if let Some(c) = client {
        replace_bare_ids(&target.path, replace, c.key_id())
            .map_err(|e| StepError::new(format!("{display}: {e}")))?;
    }
    read_back(path, display, replace, value)
}

/// Whether the file at `path` holds a credential of `ids`; a file that is not there holds
/// none.
fn file_holds_any(path: &std::path::Path, ids: &[KeyId]) -> Result<bool, file::Error> {
    match file::holds(path, ids) {
        Ok(found) => Ok(!found.is_empty()),
        Err(file::Error::Fs(crate::fs::Error::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The largest file in which bare client IDs are replaced.
const BARE_ID_LIMIT: u64 = 16 * 1024 * 1024;

/// Replace every occurrence of one of `ids` that stands on its own (not inside a longer
/// alphanumeric run) with `new_id`.
fn replace_bare_ids(
    path: &std::path::Path,
    ids: &[KeyId],
    new_id: &KeyId,
) -> Result<(), crate::fs::Error> {
    let meta = std::fs::metadata(path).map_err(|e| crate::fs::Error::Io {
        action: crate::fs::Action::Read,
        path: path.to_owned(),
        source: e,
    })?;
    if meta.len() > BARE_ID_LIMIT {
        return Ok(());
    }
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| crate::fs::Error::Io {
        action: crate::fs::Action::Read,
        path: path.to_owned(),
        source: e,
    })?);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut changed = false;
    'scan: while i < bytes.len() {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if starts_word {
            for id in ids.iter().filter(|id| *id != new_id) {
                let id = id.as_str().as_bytes();
                let end = i + id.len();
                if bytes[i..].starts_with(id)
                    && bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric())
                {
                    out.extend_from_slice(new_id.as_str().as_bytes());
                    i = end;
                    changed = true;
                    continue 'scan;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    if changed {
        // The path is the canonical one the plan resolved: no link is followed on the way.
        let route = crate::fs::Route::Resolved { file: None };
        crate::fs::atomic_write_via(path, route, &crate::fs::ContentHash::of(&bytes), &out)?;
    }
    Ok(())
}

/// The file must hold the new value, and no other credential of the rotation.
fn read_back(
    path: &std::path::Path,
    display: &str,
    replace: &[KeyId],
    value: &Secret,
) -> Result<(), StepError> {
    let new_id = crate::key::Credential::parse(value.expose_secret())
        .map(|c| c.key_id().clone())
        .ok();
    let mut ids: Vec<KeyId> = replace.to_vec();
    if let Some(id) = &new_id {
        ids.push(id.clone());
    }
    let occurrences = file::holds(path, &ids)
        .map_err(|e| StepError::new(format!("reading back {display}: {e}")))?;
    let fingerprint = value.fingerprint();
    if occurrences.is_empty() {
        return Err(StepError::new(format!(
            "{display} no longer holds the credential (was it edited meanwhile?)"
        )));
    }
    if let Some(stale) = occurrences.iter().find(|o| o.fingerprint != fingerprint) {
        return Err(StepError::new(format!(
            "{display} still holds key {} after writing",
            stale.key_id
        )));
    }
    Ok(())
}

/// Whether a file holds a credential of `ids` among other text (rather than being the value).
fn holds_key_inside(path: &std::path::Path, ids: &[KeyId]) -> bool {
    let holds = file::holds(path, ids).is_ok_and(|o| !o.is_empty());
    let whole = std::fs::read_to_string(path)
        .ok()
        .is_some_and(|t| crate::key::Credential::parse(t.trim_end_matches(['\n', '\r'])).is_ok());
    holds && !whole
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

/// The largest file [`read_value`] reads whole.
const READ_VALUE_LIMIT: u64 = 64 * 1024 * 1024;

/// The value of key `id` as it stands in a file, if the file holds it. Used by `rollback` to
/// recover the old value from a place the rotation did not overwrite, so that tsrotate never
/// has to store a secret itself.
#[must_use]
pub fn read_value(path: &std::path::Path, id: &KeyId) -> Option<Secret> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > READ_VALUE_LIMIT {
        return None;
    }
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).ok()?);
    let needle = format!("-{id}-");
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&bytes[from..], b"tskey-") {
        let start = from + at;
        if let Some(len) = crate::key::credential_len_at(&bytes[start..]) {
            let candidate = &bytes[start..start + len];
            if memchr::memmem::find(candidate, needle.as_bytes()).is_some() {
                let value = std::str::from_utf8(candidate).ok()?;
                if crate::key::Credential::parse(value).is_ok_and(|c| c.key_id() == id) {
                    return Some(Secret::new(value.to_owned()));
                }
            }
        }
        from = start + 6;
    }
    None
}
