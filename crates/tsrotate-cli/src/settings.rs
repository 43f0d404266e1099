//! Settings resolved once from flags, the environment and defaults.
//!
//! Precedence: command-line flags, then environment, then the config file, then defaults.
//! This is the only module that reads the environment; the library receives resolved values.

/// Environment variable names, in one place.
pub(crate) mod env {
    /// A personal API access token (`tskey-api-…`), as Tailscale's Terraform provider names it.
    pub(crate) const TAILSCALE_API_KEY: &str = "TAILSCALE_API_KEY";
    /// An OAuth client's ID.
    pub(crate) const TAILSCALE_OAUTH_CLIENT_ID: &str = "TAILSCALE_OAUTH_CLIENT_ID";
    /// An OAuth client's secret (`tskey-client-…`).
    pub(crate) const TAILSCALE_OAUTH_CLIENT_SECRET: &str = "TAILSCALE_OAUTH_CLIENT_SECRET";
    /// The tailnet (`-` for the credential's own).
    pub(crate) const TAILSCALE_TAILNET: &str = "TAILSCALE_TAILNET";
    /// The API's base URL (default `https://api.tailscale.com`).
    pub(crate) const TAILSCALE_BASE_URL: &str = "TAILSCALE_BASE_URL";
    /// Where journals, locks and the audit log live.
    pub(crate) const TSROTATE_STATE_DIR: &str = "TSROTATE_STATE_DIR";
    /// The file holding the key that seals journals (default
    /// `$XDG_CONFIG_HOME/tsrotate/journal.key`); kept outside the state directory.
    pub(crate) const TSROTATE_JOURNAL_KEY_FILE: &str = "TSROTATE_JOURNAL_KEY_FILE";
    /// A tracing filter overriding -v/-q.
    pub(crate) const TSROTATE_LOG: &str = "TSROTATE_LOG";
    /// Disables colour.
    pub(crate) const NO_COLOR: &str = "NO_COLOR";
    /// The XDG state directory.
    pub(crate) const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
    /// The user's home.
    pub(crate) const HOME: &str = "HOME";
    /// A file holding the OAuth client secret (for secrets mounted as files).
    pub(crate) const TAILSCALE_OAUTH_CLIENT_SECRET_FILE: &str =
        "TAILSCALE_OAUTH_CLIENT_SECRET_FILE";
    /// A file holding the API access token.
    pub(crate) const TAILSCALE_API_KEY_FILE: &str = "TAILSCALE_API_KEY_FILE";
    /// An OIDC identity token for the federated identity `TAILSCALE_OAUTH_CLIENT_ID`, as
    /// Tailscale's Terraform provider names it.
    pub(crate) const TAILSCALE_IDENTITY_TOKEN: &str = "TAILSCALE_IDENTITY_TOKEN";
    /// A file holding the identity token, read again at every exchange (projected service
    /// account tokens are refreshed in place).
    pub(crate) const TAILSCALE_IDENTITY_TOKEN_FILE: &str = "TAILSCALE_IDENTITY_TOKEN_FILE";
    /// The audience to ask GitHub Actions' ID-token endpoint for, as the Terraform provider
    /// names it.
    pub(crate) const TAILSCALE_AUDIENCE: &str = "TAILSCALE_AUDIENCE";
    /// Set by GitHub Actions in jobs with `permissions: id-token: write`.
    pub(crate) const ACTIONS_ID_TOKEN_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
    /// Set by GitHub Actions with the URL above: the bearer token for it.
    pub(crate) const ACTIONS_ID_TOKEN_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
    /// The configuration file.
    pub(crate) const TSROTATE_CONFIG: &str = "TSROTATE_CONFIG";
    /// How long one API request may take, in seconds (decimals allowed; default 30).
    pub(crate) const TSROTATE_API_TIMEOUT: &str = "TSROTATE_API_TIMEOUT";
    /// How long one request to a place's service (Vault, AWS, GitHub, Kubernetes) may take,
    /// in seconds (decimals allowed; default 30).
    pub(crate) const TSROTATE_PLACE_TIMEOUT: &str = "TSROTATE_PLACE_TIMEOUT";
    /// The XDG configuration directory.
    pub(crate) const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
    /// Vault or `OpenBao`.
    pub(crate) const VAULT_ADDR: &str = "VAULT_ADDR";
    /// Vault or `OpenBao` token.
    pub(crate) const VAULT_TOKEN: &str = "VAULT_TOKEN";
    /// AWS credentials and region, as the AWS CLI names them.
    pub(crate) const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    pub(crate) const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    pub(crate) const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
    pub(crate) const AWS_REGION: &str = "AWS_REGION";
    pub(crate) const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
    pub(crate) const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
    /// GitHub token for Actions secrets.
    pub(crate) const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
    /// GitHub's API (GitHub Actions sets it; GitHub Enterprise Server's `https://HOST/api/v3`).
    pub(crate) const GITHUB_API_URL: &str = "GITHUB_API_URL";
    /// Kubernetes configuration, and the in-cluster service address.
    pub(crate) const KUBECONFIG: &str = "KUBECONFIG";
    pub(crate) const KUBERNETES_SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";
    pub(crate) const KUBERNETES_SERVICE_PORT: &str = "KUBERNETES_SERVICE_PORT";
    /// Names of more variables children (`after`, `verify`, command places) inherit,
    /// separated by commas: children otherwise get only `tsrotate::child::INHERITED`.
    pub(crate) const TSROTATE_PASS_ENV: &str = "TSROTATE_PASS_ENV";

    /// The whole environment, for children to inherit what `tsrotate::child` allows.
    #[allow(
        clippy::disallowed_methods,
        reason = "settings.rs is where the environment is read"
    )]
    pub(crate) fn all() -> std::env::VarsOs {
        std::env::vars_os()
    }

    /// A variable's value, when set and not empty.
    #[allow(
        clippy::disallowed_methods,
        reason = "settings.rs is where the environment is read"
    )]
    pub(crate) fn var(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

use std::path::{Path, PathBuf};

use tsrotate::api::{self, Auth};
use tsrotate::config::Config;
use tsrotate::key::{Credential, KeyKind, Secret};

use crate::args::GlobalArgs;
use crate::exit::UserError;

/// The first line of a file holding tsrotate's own credential
/// ([`tsrotate::key::read_secret_file`]).
fn read_secret_file(path: &Path) -> Result<Secret, UserError> {
    tsrotate::key::read_secret_file(path, "credential").map_err(|e| UserError::new(e.to_string()))
}

/// `TSROTATE_API_TIMEOUT`, when set.
fn api_timeout() -> Result<Option<std::time::Duration>, UserError> {
    seconds(env::TSROTATE_API_TIMEOUT)
}

/// A timeout in seconds from variable `name`, when set.
fn seconds(name: &str) -> Result<Option<std::time::Duration>, UserError> {
    env::var(name)
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                .map(std::time::Duration::from_secs_f64)
                .ok_or_else(|| {
                    UserError::new(format!(
                        "{name} must be a number of seconds between 0 and 3600"
                    ))
                })
        })
        .transpose()
}

/// A federated identity from the environment, named as Tailscale's Terraform provider names
/// it: `TAILSCALE_OAUTH_CLIENT_ID` with one of `TAILSCALE_IDENTITY_TOKEN`,
/// `TAILSCALE_IDENTITY_TOKEN_FILE` or `TAILSCALE_AUDIENCE` (GitHub Actions). `None` when none
/// of the three is set; an error naming the variables when they conflict or one is missing.
fn federated_auth() -> Result<Option<Auth>, UserError> {
    let sources: Vec<&str> = [
        env::TAILSCALE_IDENTITY_TOKEN,
        env::TAILSCALE_IDENTITY_TOKEN_FILE,
        env::TAILSCALE_AUDIENCE,
    ]
    .into_iter()
    .filter(|name| env::var(name).is_some())
    .collect();
    let Some(&source) = sources.first() else {
        return Ok(None);
    };
    if let [first, second, ..] = sources[..] {
        return Err(UserError::new(format!(
            "{first} and {second} are both set: a federated identity takes its identity token from one place"
        ))
        .hint(format!(
            "unset one: {} holds a token, {} names a file holding one, {} fetches one from GitHub Actions",
            env::TAILSCALE_IDENTITY_TOKEN,
            env::TAILSCALE_IDENTITY_TOKEN_FILE,
            env::TAILSCALE_AUDIENCE
        )));
    }
    let secret = [
        env::TAILSCALE_OAUTH_CLIENT_SECRET,
        env::TAILSCALE_OAUTH_CLIENT_SECRET_FILE,
        env::TAILSCALE_API_KEY,
        env::TAILSCALE_API_KEY_FILE,
    ]
    .into_iter()
    .find(|name| env::var(name).is_some());
    if let Some(secret) = secret {
        return Err(UserError::new(format!(
            "{source} and {secret} are both set: tsrotate would not know which credential to use"
        ))
        .hint(format!(
            "a federated identity needs no stored secret: unset {secret} to use it, or unset {source} to use the secret"
        )));
    }
    let Some(client_id) = env::var(env::TAILSCALE_OAUTH_CLIENT_ID) else {
        return Err(UserError::new(format!(
            "{source} is set but {} is not",
            env::TAILSCALE_OAUTH_CLIENT_ID
        ))
        .hint(format!(
            "set {} to the federated identity's ID (admin console > Settings > Trust credentials, or `tsrotate keys list`)",
            env::TAILSCALE_OAUTH_CLIENT_ID
        )));
    };
    let identity = if let Some(token) = env::var(env::TAILSCALE_IDENTITY_TOKEN) {
        api::IdentityToken::Given(Secret::new(token.trim().to_owned()))
    } else if let Some(path) = env::var(env::TAILSCALE_IDENTITY_TOKEN_FILE) {
        let path = PathBuf::from(path);
        // Read now so a missing file is a usage error before anything else; the client
        // reads a regular file again at every exchange, as a projected token is renewed in
        // place. A pipe (`<(…)`, `/dev/stdin`) gives its token once: this read is the only
        // one, so the token is kept and used as if it had been given in the environment.
        let token = read_secret_file(&path).map_err(|e| {
            UserError::new(format!(
                "{}: {}",
                env::TAILSCALE_IDENTITY_TOKEN_FILE,
                e.message
            ))
        })?;
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            api::IdentityToken::File(path)
        } else {
            tracing::info!(
                "{} is not a regular file: its token is read once and cannot be renewed during the run",
                env::TAILSCALE_IDENTITY_TOKEN_FILE
            );
            api::IdentityToken::Given(token)
        }
    } else {
        let audience = env::var(env::TAILSCALE_AUDIENCE).unwrap_or_default();
        let missing = [
            env::ACTIONS_ID_TOKEN_REQUEST_URL,
            env::ACTIONS_ID_TOKEN_REQUEST_TOKEN,
        ]
        .into_iter()
        .find(|name| env::var(name).is_none());
        if let Some(missing) = missing {
            return Err(UserError::new(format!(
                "{} asks for an identity token from GitHub Actions, but {missing} is not set",
                env::TAILSCALE_AUDIENCE
            ))
            .hint(format!(
                "GitHub sets it in jobs with `permissions: id-token: write`; outside GitHub Actions, set {} or {} instead of {}",
                env::TAILSCALE_IDENTITY_TOKEN_FILE,
                env::TAILSCALE_IDENTITY_TOKEN,
                env::TAILSCALE_AUDIENCE
            )));
        }
        api::IdentityToken::GitHubActions(api::GitHubActions {
            request_url: env::var(env::ACTIONS_ID_TOKEN_REQUEST_URL).unwrap_or_default(),
            request_token: Secret::new(
                env::var(env::ACTIONS_ID_TOKEN_REQUEST_TOKEN).unwrap_or_default(),
            ),
            audience,
        })
    };
    Ok(Some(Auth::Federated {
        client_id,
        identity,
    }))
}

/// What a command needs of the configuration: whether it must exist, and what happens when it
/// is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// It works from the configuration (`status`, `rotate --due`, `rotate --credential`,
    /// `config check`): it must be there and valid.
    Required,
    /// It uses the configuration when there is one (`rotate KEY` also updates the places it
    /// names; `config show`): if there is one, it must be valid.
    Optional,
    /// It needs `[tailscale]` at most (`inspect`, `revoke`, `scan --verify`, ...): a broken
    /// user configuration is passed over with a warning (`revoke` in an emergency must not be
    /// stopped by it); a named one is still an error.
    ApiOnly,
}

/// How a configuration was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `--config FILE`.
    Flag,
    /// `TSROTATE_CONFIG`.
    Env,
    /// `$XDG_CONFIG_HOME/tsrotate/config.toml` or `~/.config/tsrotate/config.toml`.
    User,
}

impl Origin {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Flag => "--config",
            Self::Env => "TSROTATE_CONFIG",
            Self::User => "the user configuration",
        }
    }
}

/// A configuration as loaded, with how it was found.
pub(crate) struct Loaded {
    config: Config,
    pub(crate) origin: Origin,
}

impl std::ops::Deref for Loaded {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

/// Where the configuration file is, and how we know: `--config`, else `TSROTATE_CONFIG`, else
/// `$XDG_CONFIG_HOME/tsrotate/config.toml` (or `~/.config/tsrotate/config.toml`) when it
/// exists.
///
/// Never a `tsrotate.toml` that merely lies in the current folder: a configuration names
/// servers that receive tokens from the environment (Vault, GitHub, AWS endpoints, the API's
/// base URL) and programs that run (`after`, `verify`, `command` places), and a file in the
/// current folder may have come with a checkout, such as the one a leaked key is being
/// cleaned out of. Naming it (`--config ./tsrotate.toml`) is trusting it.
pub(crate) fn config_path(global: &GlobalArgs) -> Option<(PathBuf, Origin)> {
    if let Some(p) = &global.config {
        return Some((p.clone(), Origin::Flag));
    }
    if let Some(p) = env::var(env::TSROTATE_CONFIG) {
        return Some((PathBuf::from(p), Origin::Env));
    }
    let user = env::var(env::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .or_else(|| env::var(env::HOME).map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("tsrotate/config.toml"));
    user.filter(|p| p.exists()).map(|p| (p, Origin::User))
}

/// A hint for when a `./tsrotate.toml` is here but was not read (it never is unless named).
pub(crate) fn unread_local_hint() -> Option<&'static str> {
    std::path::Path::new("tsrotate.toml").exists().then_some(
        "./tsrotate.toml is not read unless named (it could have come with a checkout): if you trust it, give --config ./tsrotate.toml or set TSROTATE_CONFIG",
    )
}

/// Load and validate the configuration the command may use (see [`Need`]).
pub(crate) fn load_config(global: &GlobalArgs, need: Need) -> anyhow::Result<Option<Loaded>> {
    let Some((path, origin)) = config_path(global) else {
        if need == Need::Required {
            return Err(UserError::new("no configuration file")
                .hint(unread_local_hint().unwrap_or(
                    "give --config FILE, set TSROTATE_CONFIG, or create ~/.config/tsrotate/config.toml",
                ))
                .into());
        }
        return Ok(None);
    };
    // Who may change it decides what runs: refused like an untrusted state directory. The
    // checks are made on the file as opened, and what is parsed is what was checked.
    let loaded = tsrotate::rotate::session::read_configuration(&path)
        .map_err(|e| match e {
            tsrotate::rotate::session::Error::Untrusted { .. } => {
                let hint = e.hint();
                let error = UserError::new(e.to_string());
                match hint {
                    Some(hint) => error.hint(hint),
                    None => error,
                }
            }
            other => UserError::new(format!(
                "cannot read the configuration `{}`: {}",
                tsrotate::text::path(&path),
                io_reason(&other)
            ))
            .hint("give a configuration file you can read, with --config FILE or TSROTATE_CONFIG"),
        })
        .and_then(|text| Config::parse(&text, &path).map_err(|e| UserError::new(e.to_string())));
    match loaded {
        Ok(config) => Ok(Some(Loaded { config, origin })),
        Err(e) if need == Need::ApiOnly && origin == Origin::User => {
            tracing::warn!("{e}; going on without it");
            Ok(None)
        }
        Err(e) if origin == Origin::User => Err(anyhow::Error::from(e.hint(
            "fix it, or give another with --config FILE (the user configuration is read when none is named)",
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The system's reason in a configuration read error (`Permission denied (os error 13)`),
/// or the whole error when it has none.
fn io_reason(error: &tsrotate::rotate::session::Error) -> String {
    match error {
        tsrotate::rotate::session::Error::Fs(tsrotate::fs::Error::Io { source, .. }) => {
            source.to_string()
        }
        other => other.to_string(),
    }
}

/// Logins to the services places live in, from their usual environment variables.
/// Refused (exit 2) when `TSROTATE_PLACE_TIMEOUT` is not a number of seconds.
pub(crate) fn sink_logins() -> Result<tsrotate::sink::Logins, UserError> {
    let kubeconfig = env::var(env::KUBECONFIG)
        .and_then(|v| v.split(':').find(|p| !p.is_empty()).map(PathBuf::from))
        .or_else(|| {
            env::var(env::HOME)
                .map(|h| PathBuf::from(h).join(".kube/config"))
                .filter(|p| p.exists())
        });
    Ok(tsrotate::sink::Logins {
        vault_addr: env::var(env::VAULT_ADDR),
        vault_token: env::var(env::VAULT_TOKEN).map(Secret::new),
        aws_access_key_id: env::var(env::AWS_ACCESS_KEY_ID),
        aws_secret_access_key: env::var(env::AWS_SECRET_ACCESS_KEY).map(Secret::new),
        aws_session_token: env::var(env::AWS_SESSION_TOKEN).map(Secret::new),
        aws_region: env::var(env::AWS_REGION).or_else(|| env::var(env::AWS_DEFAULT_REGION)),
        aws_endpoint_url: env::var(env::AWS_ENDPOINT_URL),
        github_token: env::var(env::GITHUB_TOKEN).map(Secret::new),
        kubeconfig,
        kubernetes_service: env::var(env::KUBERNETES_SERVICE_HOST)
            .zip(env::var(env::KUBERNETES_SERVICE_PORT)),
        child_env: child_env(),
        request_timeout: seconds(env::TSROTATE_PLACE_TIMEOUT)?,
    })
}

/// The environment children start with: `tsrotate::child::INHERITED` plus the names in
/// `TSROTATE_PASS_ENV` (never tsrotate's own `TAILSCALE_*`/`TSROTATE_*`).
pub(crate) fn child_env() -> tsrotate::child::Environment {
    let pass: Vec<String> = env::var(env::TSROTATE_PASS_ENV)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    let (environment, refused) = tsrotate::child::Environment::from_parent(env::all(), &pass);
    for name in refused {
        tracing::warn!(
            "{}: `{name}` is not passed to commands: tsrotate's own settings and credentials never are",
            env::TSROTATE_PASS_ENV
        );
    }
    environment
}

/// How to reach the Tailscale API, from the environment.
#[derive(Clone)]
pub(crate) struct ApiSettings {
    pub(crate) base_url: String,
    /// Where `base_url` came from, for hints: the variable or the configuration file's field.
    pub(crate) base_url_origin: String,
    pub(crate) tailnet: String,
    pub(crate) auth: Option<Auth>,
    /// How long one API request may take (`TSROTATE_API_TIMEOUT`); the client's default if
    /// unset.
    pub(crate) timeout: Option<std::time::Duration>,
}

impl ApiSettings {
    /// The environment, then the configuration file's `[tailscale]` section when there is a
    /// configuration (see [`config_path`]): every command reaches the API the same way,
    /// whether or not it uses the rest of the configuration.
    pub(crate) fn configured(global: &GlobalArgs, scopes: &[&str]) -> anyhow::Result<Self> {
        let config = load_config(global, Need::ApiOnly)?;
        Ok(Self::resolve(scopes, config.as_ref())?)
    }

    /// The environment, then the configuration's `[tailscale]` section, then defaults.
    ///
    /// Credentials are one unit: when the environment holds any, the configuration's are not
    /// looked at (a half from each would be a client nobody configured).
    pub(crate) fn resolve(scopes: &[&str], config: Option<&Loaded>) -> Result<Self, UserError> {
        let section = config.map(|c| &c.tailscale);
        let (base_url, base_url_origin) = match env::var(env::TAILSCALE_BASE_URL) {
            Some(url) => (url, env::TAILSCALE_BASE_URL.to_owned()),
            None => match section.and_then(|s| s.base_url.clone()) {
                Some(url) => (
                    url,
                    "`base_url` in the configuration file's [tailscale] section".to_owned(),
                ),
                None => (
                    api::DEFAULT_BASE_URL.to_owned(),
                    "the default API URL".to_owned(),
                ),
            },
        };
        let tailnet = env::var(env::TAILSCALE_TAILNET)
            .or_else(|| section.and_then(|s| s.tailnet.clone()))
            .unwrap_or_else(|| "-".to_owned());
        let env_has_credentials = [
            env::TAILSCALE_OAUTH_CLIENT_SECRET,
            env::TAILSCALE_OAUTH_CLIENT_SECRET_FILE,
            env::TAILSCALE_API_KEY,
            env::TAILSCALE_API_KEY_FILE,
            env::TAILSCALE_IDENTITY_TOKEN,
            env::TAILSCALE_IDENTITY_TOKEN_FILE,
            env::TAILSCALE_AUDIENCE,
        ]
        .iter()
        .any(|name| env::var(name).is_some());
        let credentials = section.filter(|_| !env_has_credentials);
        let timeout = api_timeout()?;
        if let Some(auth) = federated_auth()? {
            return Ok(Self {
                base_url,
                base_url_origin,
                tailnet,
                auth: Some(auth),
                timeout,
            });
        }
        let secret = match env::var(env::TAILSCALE_OAUTH_CLIENT_SECRET) {
            Some(v) => Some((
                Secret::new(v),
                env::TAILSCALE_OAUTH_CLIENT_SECRET.to_owned(),
            )),
            None => env::var(env::TAILSCALE_OAUTH_CLIENT_SECRET_FILE)
                .map(PathBuf::from)
                .or_else(|| credentials.and_then(|s| s.oauth_client_secret_file.clone()))
                .map(|f| Ok((read_secret_file(&f)?, format!("`{}`", f.display()))))
                .transpose()?,
        };
        let auth = if let Some((client_secret, source)) = secret {
            let parsed = Credential::parse(client_secret.expose_secret()).ok();
            if parsed
                .as_ref()
                .is_some_and(|c| c.kind() != &KeyKind::OAuthClientSecret)
            {
                return Err(UserError::new(format!(
                    "{source} does not hold an OAuth client secret (`tskey-client-…`)"
                )));
            }
            // The secret alone identifies the client; the ID is optional.
            let client_id = env::var(env::TAILSCALE_OAUTH_CLIENT_ID)
                .or_else(|| credentials.and_then(|s| s.oauth_client_id.clone()))
                .or_else(|| parsed.as_ref().map(|c| c.key_id().to_string()))
                .unwrap_or_default();
            Some(Auth::OAuthClient {
                client_id,
                client_secret,
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            })
        } else {
            let key_file = env::var(env::TAILSCALE_API_KEY_FILE)
                .map(PathBuf::from)
                .or_else(|| credentials.and_then(|s| s.api_key_file.clone()));
            match env::var(env::TAILSCALE_API_KEY) {
                Some(v) => Some(Auth::ApiAccessToken(Secret::new(v))),
                None => key_file
                    .map(|f| read_secret_file(&f).map(Auth::ApiAccessToken))
                    .transpose()?,
            }
        };
        Ok(Self {
            base_url,
            base_url_origin,
            tailnet,
            auth,
            timeout,
        })
    }

    /// A client, or `None` when no credentials are configured.
    pub(crate) fn client(&self) -> anyhow::Result<Option<api::Client>> {
        let Some(auth) = self.auth.clone() else {
            return Ok(None);
        };
        let mut builder = api::ClientBuilder::new(auth)
            .base_url(&self.base_url)
            .tailnet(&self.tailnet);
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        let client = builder.build().map_err(|e| {
            UserError::new(e.to_string()).hint(format!("check {}", self.base_url_origin))
        })?;
        Ok(Some(client))
    }

    /// A client, or a usage error saying how to configure credentials.
    pub(crate) fn require_client(&self) -> anyhow::Result<api::Client> {
        if matches!(self.auth, Some(Auth::ApiAccessToken(_))) {
            tracing::warn!(
                "tsrotate is running on a personal API access token: it has its owner's full rights and expires with them. An OAuth client is the safer choice: create one with only the scopes tsrotate needs (admin console > Settings > OAuth clients) and set {} and {}",
                env::TAILSCALE_OAUTH_CLIENT_ID,
                env::TAILSCALE_OAUTH_CLIENT_SECRET
            );
        }
        self.client()?.ok_or_else(|| {
            let mut hint = format!(
                "set {} and {} (an OAuth client, recommended), {} with {}, {} or {} (a federated identity: no stored secret), or {} (a personal API access token), or name them in the configuration's [tailscale] section",
                env::TAILSCALE_OAUTH_CLIENT_ID,
                env::TAILSCALE_OAUTH_CLIENT_SECRET,
                env::TAILSCALE_OAUTH_CLIENT_ID,
                env::TAILSCALE_IDENTITY_TOKEN_FILE,
                env::TAILSCALE_IDENTITY_TOKEN,
                env::TAILSCALE_AUDIENCE,
                env::TAILSCALE_API_KEY
            );
            if let Some(local) = unread_local_hint() {
                hint = format!("{hint}; {local}");
            }
            UserError::new("no Tailscale API credentials")
                .hint(hint)
                .into()
        })
    }
}
