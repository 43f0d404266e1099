//! Sinks: the places that hold a credential and receive its replacement.
//!
//! Two families:
//!
//! - [`keyed`]: a text file holding the credential among other text, edited by key ID where
//!   the credential stands (files found with `rotate --in PATH`, configured `type = "file"`
//!   places that hold more than the value); [`file`](mod@file) finds and replaces.
//! - Everything named in a configuration file ([`SinkSpec`]): a field of a dotenv, JSON, YAML
//!   or TOML file, a Vault/OpenBao KV v2 secret, an AWS Secrets Manager secret or SSM
//!   parameter, a GitHub Actions secret, a Kubernetes Secret, a command. Each implements
//!   [`Sink`].
//!
//! # The contract
//!
//! - [`Sink::read`] returns what the place holds now and a [`Version`] for check-and-set.
//!   Write-only places (GitHub Actions secrets) answer [`ErrorKind::WriteOnly`].
//! - [`Sink::write`] stores a value only if the place is still as `expect` says ([`Expect`]):
//!   a value changed by someone else since it was read is refused with [`ErrorKind::Conflict`],
//!   never overwritten. It returns the new version when the place has versions.
//! - Neither logs the value, nor puts it in an error: HTTP errors carry the status and the
//!   service's message passed through [`crate::key::redact_in`], never a request body.
//! - Both are idempotent: the rotation engine may repeat a write after a crash.

pub mod aws;
pub mod command;
pub mod file;
pub mod github;
mod http;
pub mod keyed;
pub mod kubernetes;
pub mod structured;
pub mod vault;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::key::Secret;

/// A boxed future, so that sinks can live in a `Vec<Box<dyn Sink>>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An opaque version token for check-and-set: a file's content hash, Vault's metadata
/// version, Kubernetes' `resourceVersion`, an AWS `VersionId`. Not secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub String);

/// What a place holds now.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The value, or `None` when the field, secret or object does not exist.
    pub value: Option<Secret>,
    /// The version to write against; `None` when the object does not exist yet.
    pub version: Option<Version>,
}

/// What a write expects to find, so that it never clobbers someone else's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The place is still at this version.
    Version(Version),
    /// The place does not exist yet (create it).
    Absent,
    /// No check is possible (write-only places).
    Unchecked,
}

impl Expect {
    /// The expectation matching a snapshot.
    #[must_use]
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        match &snapshot.version {
            Some(v) => Self::Version(v.clone()),
            None => Self::Absent,
        }
    }
}

/// Why a sink could not be read or written: which place, what kind of failure (the
/// rotation engine decides from it whether to try again), and what happened, in words.
/// Never carries a secret value.
///
/// One struct for every sink, so that a sink says only what differs (the kind and the
/// message) and the rules (the wording of a conflict, what is worth retrying) live here once.
#[derive(Debug, thiserror::Error)]
#[error("{sink}: {}{message}", kind.prefix())]
pub struct Error {
    /// The place, as [`Sink::describe`] names it.
    pub sink: String,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
    /// What a person can do about it, shown on its own line (never inside `message`).
    pub hint: Option<String>,
}

/// What kind of failure a sink met. Only [`ErrorKind::is_retryable`] kinds are worth trying
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The place changed since it was read; the write was refused.
    Conflict,
    /// The place cannot be read (GitHub Actions secrets, commands).
    WriteOnly,
    /// The service refused our credentials or lacks a permission.
    Denied,
    /// The service could not be reached, failed, or asked us to slow down; trying again later
    /// may work.
    Unavailable,
    /// The sink is configured wrongly, or its credentials are missing.
    Config,
    /// A place in a file can no longer be reached the way the rotation's plan resolved it:
    /// a folder on the way (or the file) became a symbolic link, or the configured path now
    /// leads elsewhere. Nothing is read or written through it.
    Redirected,
    /// Anything else the service or the file said.
    Other,
}

impl ErrorKind {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        match self {
            Self::Unavailable => true,
            Self::Conflict
            | Self::WriteOnly
            | Self::Denied
            | Self::Config
            | Self::Redirected
            | Self::Other => false,
        }
    }

    /// What the message is shown after.
    fn prefix(self) -> &'static str {
        match self {
            Self::Denied => "access denied: ",
            _ => "",
        }
    }
}

impl Error {
    /// An error of any kind.
    pub fn new(sink: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            sink: sink.into(),
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// With advice for people, shown on its own line.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The place changed since it was read; the write was refused.
    pub fn conflict(sink: impl Into<String>) -> Self {
        Self::new(
            sink,
            ErrorKind::Conflict,
            "changed by someone else since it was read; not overwritten",
        )
    }

    /// The place cannot be read back.
    pub fn write_only(sink: impl Into<String>) -> Self {
        Self::new(
            sink,
            ErrorKind::WriteOnly,
            "write-only; its value cannot be read back",
        )
    }

    /// The service refused our credentials or lacks a permission.
    pub fn denied(sink: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(sink, ErrorKind::Denied, message)
    }

    /// The service could not be reached or failed.
    pub fn unavailable(sink: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(sink, ErrorKind::Unavailable, message)
    }

    /// The sink is configured wrongly, or its credentials are missing.
    pub fn config(sink: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(sink, ErrorKind::Config, message)
    }

    /// A place in a file, redirected since the plan ([`ErrorKind::Redirected`]), or the
    /// error of another kind that `error` is.
    pub fn of_fs(sink: impl Into<String>, error: &crate::fs::Error) -> Self {
        use crate::fs::Error as E;
        match error {
            E::Changed { .. } => Self::conflict(sink),
            E::Redirected { .. } | E::Repointed { .. } => {
                Self::new(sink, ErrorKind::Redirected, error.to_string())
            }
            E::NotARegularFile { kind, .. } if *kind == "a symbolic link" => {
                Self::new(sink, ErrorKind::Redirected, error.to_string())
            }
            e => Self::other(sink, e.to_string()),
        }
    }

    /// Anything else.
    pub fn other(sink: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(sink, ErrorKind::Other, message)
    }

    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

/// One place that holds a credential.
pub trait Sink: Send + Sync {
    /// A human description that names the place without any secret, such as
    /// `vault-kv secret/ci/tailscale#authkey`.
    fn describe(&self) -> String;

    /// Whether [`Sink::read`] can return the value (false for write-only places).
    fn readable(&self) -> bool {
        true
    }

    /// What the place holds now.
    fn read(&self) -> BoxFuture<'_, Result<Snapshot, Error>>;

    /// Store `value` if the place is still as `expect` says. Returns the new version, if the
    /// place has versions.
    fn write<'a>(
        &'a self,
        value: &'a Secret,
        expect: &'a Expect,
    ) -> BoxFuture<'a, Result<Option<Version>, Error>>;
}

/// A sink as the configuration file and the journal describe it. Serializable: holds
/// references to credentials (environment variable names, file paths), never secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkSpec {
    /// A file that is the secret, or holds the old value somewhere inside it.
    File {
        /// The file.
        path: std::path::PathBuf,
    },
    /// `KEY=value` in a dotenv or systemd `EnvironmentFile`.
    Dotenv {
        /// The file.
        path: std::path::PathBuf,
        /// The variable.
        field: String,
    },
    /// A string field of a JSON document (`a.b.c`).
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// The dotted path of the field.
        field: String,
    },
    /// A string field of a YAML document (`a.b.c`).
    Yaml {
        /// The file.
        path: std::path::PathBuf,
        /// The dotted path of the field.
        field: String,
    },
    /// A string field of a TOML document (`a.b.c`).
    Toml {
        /// The file.
        path: std::path::PathBuf,
        /// The dotted path of the field.
        field: String,
    },
    /// A field of a Vault or `OpenBao` KV version 2 secret, written with check-and-set.
    VaultKv {
        /// The server (`VAULT_ADDR` when absent).
        #[serde(default)]
        address: Option<String>,
        /// The KV v2 mount (`secret`).
        #[serde(default = "default_vault_mount")]
        mount: String,
        /// The secret's path under the mount.
        path: String,
        /// The field inside the secret.
        field: String,
        /// A file holding the token (`VAULT_TOKEN` when absent).
        #[serde(default)]
        token_file: Option<std::path::PathBuf>,
        /// A Vault Enterprise namespace.
        #[serde(default)]
        namespace: Option<String>,
    },
    /// An AWS Secrets Manager secret, whole or one field of its JSON.
    AwsSecretsmanager {
        /// The secret's name or ARN.
        secret_id: String,
        /// When the secret is a JSON object: the field to replace.
        #[serde(default)]
        json_field: Option<String>,
        /// The region (`AWS_REGION` when absent).
        #[serde(default)]
        region: Option<String>,
        /// Another endpoint (a local one, or a VPC endpoint).
        #[serde(default)]
        endpoint_url: Option<String>,
    },
    /// An AWS SSM Parameter Store `SecureString`.
    AwsSsm {
        /// The parameter's name.
        name: String,
        /// The region (`AWS_REGION` when absent).
        #[serde(default)]
        region: Option<String>,
        /// Another endpoint.
        #[serde(default)]
        endpoint_url: Option<String>,
    },
    /// A GitHub Actions secret of a repository, an environment or an organization.
    GithubActions {
        /// `owner/name`, for repository and environment secrets.
        #[serde(default)]
        repository: Option<String>,
        /// For organization secrets.
        #[serde(default)]
        organization: Option<String>,
        /// For environment secrets (with `repository`).
        #[serde(default)]
        environment: Option<String>,
        /// Organization secret visibility: `all`, `private` or `selected`.
        #[serde(default)]
        visibility: Option<String>,
        /// The secret's name.
        secret: String,
        /// The API (`https://api.github.com`, or GitHub Enterprise's).
        #[serde(default)]
        api_url: Option<String>,
    },
    /// A key of a Kubernetes Secret.
    KubernetesSecret {
        /// The namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The key inside `data`.
        key: String,
        /// A kubeconfig context other than the current one.
        #[serde(default)]
        context: Option<String>,
    },
    /// A command that receives the value on stdin and in `TSROTATE_NEW_KEY`.
    Command {
        /// The program and its arguments (never the secret).
        run: Vec<String>,
    },
}

fn default_vault_mount() -> String {
    "secret".to_owned()
}

impl SinkSpec {
    /// The sink's type, as in the configuration.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File { .. } => "file",
            Self::Dotenv { .. } => "dotenv",
            Self::Json { .. } => "json",
            Self::Yaml { .. } => "yaml",
            Self::Toml { .. } => "toml",
            Self::VaultKv { .. } => "vault-kv",
            Self::AwsSecretsmanager { .. } => "aws-secretsmanager",
            Self::AwsSsm { .. } => "aws-ssm",
            Self::GithubActions { .. } => "github-actions",
            Self::KubernetesSecret { .. } => "kubernetes-secret",
            Self::Command { .. } => "command",
        }
    }
}

/// tsrotate's own logins to the services places live in (and their endpoints), resolved by
/// the caller (the CLI reads `VAULT_ADDR`, `VAULT_TOKEN`, `AWS_*`, `GITHUB_TOKEN`,
/// `KUBECONFIG`); the library never reads the environment.
#[derive(Clone, Default)]
pub struct Logins {
    /// `VAULT_ADDR`.
    pub vault_addr: Option<String>,
    /// `VAULT_TOKEN`.
    pub vault_token: Option<Secret>,
    /// `AWS_ACCESS_KEY_ID`.
    pub aws_access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub aws_secret_access_key: Option<Secret>,
    /// `AWS_SESSION_TOKEN`.
    pub aws_session_token: Option<Secret>,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION`.
    pub aws_region: Option<String>,
    /// `AWS_ENDPOINT_URL`: one endpoint for every AWS service (a local test server).
    pub aws_endpoint_url: Option<String>,
    /// `GITHUB_TOKEN`.
    pub github_token: Option<Secret>,
    /// `KUBECONFIG` (first file), else `~/.kube/config`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// In a pod: `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    pub kubernetes_service: Option<(String, String)>,
    /// The environment children start with (command places, `after`, `verify`): cleaned of
    /// every credential above and of tsrotate's own (see [`crate::child`]).
    pub child_env: crate::child::Environment,
    /// How long one request to a place's service (Vault, AWS, GitHub, Kubernetes) may take;
    /// the default of 30 seconds when `None`. Every request is bounded either way.
    pub request_timeout: Option<std::time::Duration>,
}

impl Logins {
    /// The secrets held here: redacted from children's output with the new key.
    #[must_use]
    pub fn secrets(&self) -> Vec<Secret> {
        [
            &self.vault_token,
            &self.aws_secret_access_key,
            &self.aws_session_token,
            &self.github_token,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

/// The file a configured place lives in, if it is in a local file.
#[must_use]
pub fn file_path(spec: &SinkSpec) -> Option<&std::path::Path> {
    match spec {
        SinkSpec::File { path }
        | SinkSpec::Dotenv { path, .. }
        | SinkSpec::Json { path, .. }
        | SinkSpec::Yaml { path, .. }
        | SinkSpec::Toml { path, .. } => Some(path),
        SinkSpec::VaultKv { .. }
        | SinkSpec::AwsSecretsmanager { .. }
        | SinkSpec::AwsSsm { .. }
        | SinkSpec::GithubActions { .. }
        | SinkSpec::KubernetesSecret { .. }
        | SinkSpec::Command { .. } => None,
    }
}

/// A human description of a configured place, without secrets.
#[must_use]
pub fn describe(spec: &SinkSpec) -> String {
    match spec {
        SinkSpec::File { path } => format!("file {}", path.display()),
        SinkSpec::Dotenv { path, field }
        | SinkSpec::Json { path, field }
        | SinkSpec::Yaml { path, field }
        | SinkSpec::Toml { path, field } => {
            format!("{} {}#{field}", spec.kind(), path.display())
        }
        SinkSpec::VaultKv {
            mount, path, field, ..
        } => format!("vault-kv {mount}/{path}#{field}"),
        SinkSpec::AwsSecretsmanager {
            secret_id,
            json_field,
            ..
        } => match json_field {
            Some(f) => format!("aws-secretsmanager {secret_id}#{f}"),
            None => format!("aws-secretsmanager {secret_id}"),
        },
        SinkSpec::AwsSsm { name, .. } => format!("aws-ssm {name}"),
        SinkSpec::GithubActions {
            repository,
            organization,
            environment,
            secret,
            ..
        } => {
            let owner = match (repository, organization, environment) {
                (Some(r), _, Some(e)) => format!("{r} environment {e}"),
                (Some(r), _, None) => r.clone(),
                (None, Some(o), _) => format!("organization {o}"),
                (None, None, _) => "?".to_owned(),
            };
            format!("github-actions {owner} secret {secret}")
        }
        SinkSpec::KubernetesSecret {
            namespace,
            name,
            key,
            ..
        } => format!("kubernetes-secret {namespace}/{name}#{key}"),
        SinkSpec::Command { run } => format!("command {}", run.first().map_or("", String::as_str)),
    }
}

/// Build the sink a configuration entry names, with the credentials its service needs.
#[allow(clippy::too_many_lines, reason = "one arm per sink type, each short")]
pub fn build(spec: &SinkSpec, credentials: &Logins) -> Result<Box<dyn Sink>, Error> {
    use structured::{FieldSink, Format};
    let missing = |what: &str| Error::config(describe(spec), format!("{what} is not set"));
    let timeout = credentials
        .request_timeout
        .unwrap_or(crate::http::REQUEST_TIMEOUT);
    Ok(match spec {
        SinkSpec::File { path } => Box::new(FieldSink::new(Format::Whole, path, "")?),
        SinkSpec::Dotenv { path, field } => Box::new(FieldSink::new(Format::Dotenv, path, field)?),
        SinkSpec::Json { path, field } => Box::new(FieldSink::new(Format::Json, path, field)?),
        SinkSpec::Yaml { path, field } => Box::new(FieldSink::new(Format::Yaml, path, field)?),
        SinkSpec::Toml { path, field } => Box::new(FieldSink::new(Format::Toml, path, field)?),
        SinkSpec::VaultKv {
            address,
            mount,
            path,
            field,
            token_file,
            namespace,
        } => {
            let address = address
                .clone()
                .or_else(|| credentials.vault_addr.clone())
                .ok_or_else(|| missing("the Vault address (`address` or VAULT_ADDR)"))?;
            let token = match token_file {
                Some(file) => read_token_file(spec, file)?,
                None => credentials
                    .vault_token
                    .clone()
                    .ok_or_else(|| missing("VAULT_TOKEN (or `token_file`)"))?,
            };
            Box::new(
                vault::VaultKvSink::new(&address, mount, path, field, token, namespace.clone())?
                    .with_timeout(timeout),
            )
        }
        SinkSpec::AwsSecretsmanager {
            secret_id,
            json_field,
            region,
            endpoint_url,
        } => {
            let region = region
                .clone()
                .or_else(|| credentials.aws_region.clone())
                .ok_or_else(|| missing("the AWS region (`region` or AWS_REGION)"))?;
            let endpoint = endpoint_url
                .clone()
                .or_else(|| credentials.aws_endpoint_url.clone());
            Box::new(
                aws::SecretsManagerSink::new(
                    secret_id,
                    json_field.clone(),
                    &region,
                    endpoint,
                    aws_credentials(spec, credentials)?,
                )?
                .with_timeout(timeout),
            )
        }
        SinkSpec::AwsSsm {
            name,
            region,
            endpoint_url,
        } => {
            let region = region
                .clone()
                .or_else(|| credentials.aws_region.clone())
                .ok_or_else(|| missing("the AWS region (`region` or AWS_REGION)"))?;
            let endpoint = endpoint_url
                .clone()
                .or_else(|| credentials.aws_endpoint_url.clone());
            Box::new(
                aws::SsmSink::new(name, &region, endpoint, aws_credentials(spec, credentials)?)?
                    .with_timeout(timeout),
            )
        }
        SinkSpec::GithubActions {
            repository,
            organization,
            environment,
            visibility,
            secret,
            api_url,
        } => {
            let token = credentials
                .github_token
                .clone()
                .ok_or_else(|| missing("GITHUB_TOKEN"))?;
            let target = match (repository, organization) {
                (Some(repository), _) => {
                    let (owner, repo) = repository.split_once('/').ok_or_else(|| {
                        Error::config(
                            describe(spec),
                            format!("repository `{repository}` must be `owner/name`"),
                        )
                    })?;
                    match environment {
                        Some(environment) => github::Target::Environment {
                            owner: owner.to_owned(),
                            repo: repo.to_owned(),
                            environment: environment.clone(),
                        },
                        None => github::Target::Repository {
                            owner: owner.to_owned(),
                            repo: repo.to_owned(),
                        },
                    }
                }
                (None, Some(org)) => github::Target::Organization {
                    org: org.clone(),
                    visibility: visibility.clone().unwrap_or_else(|| "private".to_owned()),
                },
                (None, None) => return Err(missing("`repository` or `organization`")),
            };
            let api = api_url.as_deref().unwrap_or(github::DEFAULT_API_URL);
            Box::new(
                github::ActionsSecretSink::new(target, secret, api, token)?.with_timeout(timeout),
            )
        }
        SinkSpec::KubernetesSecret {
            namespace,
            name,
            key,
            context,
        } => {
            let cluster = match (&credentials.kubeconfig, &credentials.kubernetes_service) {
                (Some(path), _) => kubernetes::Cluster::from_kubeconfig(path, context.as_deref())?,
                (None, Some((host, port))) => kubernetes::Cluster::in_cluster(host, port)?,
                (None, None) => {
                    return Err(missing("KUBECONFIG (or an in-cluster service account)"));
                }
            };
            Box::new(
                kubernetes::SecretSink::new(cluster, namespace, name, key)?.with_timeout(timeout),
            )
        }
        SinkSpec::Command { run } => Box::new(
            command::CommandSink::new(run.clone())?
                .with_environment(credentials.child_env.clone(), credentials.secrets()),
        ),
    })
}

/// AWS credentials from the usual variables.
fn aws_credentials(spec: &SinkSpec, credentials: &Logins) -> Result<aws::AwsCredentials, Error> {
    match (
        &credentials.aws_access_key_id,
        &credentials.aws_secret_access_key,
    ) {
        (Some(id), Some(secret)) => Ok(aws::AwsCredentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: credentials.aws_session_token.clone(),
        }),
        _ => Err(Error::config(
            describe(spec),
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set".to_owned(),
        )),
    }
}

/// The first line of a token file ([`crate::key::read_secret_file`]).
fn read_token_file(spec: &SinkSpec, path: &std::path::Path) -> Result<Secret, Error> {
    crate::key::read_secret_file(path, "token")
        .map_err(|e| Error::config(describe(spec), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: a hint is a field, shown on its own line, never text inside the message;
    /// it reaches the engine's step error, which decides what the report advises.
    #[test]
    fn a_hint_is_a_field_that_the_step_error_keeps() {
        let error = Error::config("Vault secret kv/app", "not found (404)")
            .with_hint("is the mount a KV version 2 secrets engine?");
        assert_eq!(error.to_string(), "Vault secret kv/app: not found (404)");
        let step = crate::rotate::StepError::sink(error);
        assert_eq!(
            step.hint.as_deref(),
            Some("is the mount a KV version 2 secrets engine?")
        );
        assert!(!step.to_string().contains("hint"), "{step}");
    }
}
