//! GitHub Actions workflows that pass a Tailscale credential, and their rewrite to a federated
//! identity.
//!
//! # What is found
//!
//! In `.github/workflows/*.yml` and `*.yaml` (symbolic links are reported, never followed):
//!
//! | where | shape | becomes |
//! |---|---|---|
//! | a step `uses: tailscale/github-action@…` | `with: authkey: ${{ secrets.X }}` | `oauth-client-id: <id>` + `audience: <aud>` |
//! | the same | `with: oauth-secret: ${{ secrets.X }}` (+ `oauth-client-id`) | `oauth-client-id: <id>` + `audience: <aud>` |
//! | `env:` of the workflow, a job or a step | `TS_AUTHKEY`, `TS_AUTH_KEY`, `TS_OAUTH_SECRET`, `TS_OAUTH_CLIENT_SECRET`, `TS_CLIENT_SECRET`, `TAILSCALE_AUTHKEY`: `${{ secrets.X }}` (+ `TS_CLIENT_ID`, `TS_OAUTH_CLIENT_ID`) | `TS_CLIENT_ID: <id>` + `TS_AUDIENCE: <aud>` (containerboot, `tailscale up`) |
//! | the same | `TAILSCALE_API_KEY`, `TAILSCALE_OAUTH_CLIENT_SECRET` (+ `TAILSCALE_OAUTH_CLIENT_ID`) | `TAILSCALE_OAUTH_CLIENT_ID: <id>` + `TAILSCALE_AUDIENCE: <aud>` (Terraform provider) |
//!
//! The input names are those of `tailscale/github-action` v4 (`oauth-client-id` with
//! `audience`, which needs `id-token: write`). Any other `${{ secrets.X }}` of the same
//! secret (a `run:` script, a reusable workflow's `secrets:`) is a [`Manual`] change: tsrotate
//! cannot know what reads it, so it prints the change and the old credential stays until the
//! user says it is done.
//!
//! # Permissions
//!
//! A job can only ask for an identity token with `id-token: write`. It is added to each job
//! that consumes the credential (for a workflow-level `env:`, every job), never wider:
//!
//! - the job has a `permissions:` mapping: `id-token: write` is added to it (or set);
//! - the job has none but the workflow has a mapping: the job gets a copy of the workflow's
//!   entries plus `id-token: write`, because a job's block replaces the workflow's;
//! - neither: the job gets `contents: read` and `id-token: write`. A `permissions:` block sets
//!   every permission it does not name to `none`, so a job that relied on the repository's
//!   default token rights for more than reading the code needs those added: a [`Note`] says so;
//! - `write-all` already includes it; `read-all` and other forms are a [`Manual`] change.
//!
//! # Subject
//!
//! GitHub's `sub` claim is `repo:OWNER/REPO:environment:NAME` for a job with an environment,
//! else `repo:OWNER/REPO:ref:REF` (or `:pull_request`) from the event. Each consuming job
//! yields a [`Need`] from its `environment` or the workflow's `on:`; [`super::subject::fold`]
//! makes one pattern of them and says when, and why, it had to be broad.
//!
//! # How the text is edited
//!
//! A rewrite replaces or inserts whole lines and keeps every other byte (comments, quoting,
//! order, line endings). It understands block-style YAML as workflows are written; to be sure
//! it understood, the result is parsed and must equal the original document with exactly the
//! intended changes, or the file is refused as [`Error::Unsupported`] with the change to make by
//! hand.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_yaml_ng::{Mapping, Value};

use super::Identity;
use super::subject::Need;
use crate::fs::ContentHash;

/// Where workflows live, relative to the repository root.
pub const WORKFLOWS_DIR: &str = ".github/workflows";

/// Errors of finding and rewriting workflows.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A workflow or its folder could not be read.
    #[error("could not read `{}`", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A workflow is not valid YAML.
    #[error("`{file}` is not valid YAML: {message}")]
    Parse {
        /// The workflow, relative to the repository.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// A workflow's layout is beyond what a minimal edit can change safely.
    #[error("`{file}` line {line}: {what}; make this change by hand")]
    Unsupported {
        /// The workflow, relative to the repository.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is not understood.
        what: String,
    },
    /// An `OWNER/REPO` argument is malformed.
    #[error("invalid repository `{0}`: expected OWNER/REPO")]
    Repository(String),
}

/// A GitHub repository, `OWNER/REPO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The owner (user or organization).
    pub owner: String,
    /// The repository's name.
    pub name: String,
}

impl FromStr for Repo {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let valid = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match s.split_once('/') {
            Some((owner, name)) if valid(owner) && valid(name) => Ok(Self {
                owner: owner.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(Error::Repository(s.to_owned())),
        }
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A workflow file as read.
#[derive(Debug, Clone)]
pub struct WorkflowFile {
    /// Where it is.
    pub path: PathBuf,
    /// The path relative to the repository, `/`-separated (for messages and diffs).
    pub relative: String,
    /// Its contents.
    pub text: String,
    /// The hash of the contents, so a rewrite refuses a file that changed since.
    pub hash: ContentHash,
}

impl WorkflowFile {
    /// A workflow from text (tests, and files read elsewhere).
    #[must_use]
    pub fn new(path: PathBuf, relative: &str, text: String) -> Self {
        let hash = ContentHash::of(text.as_bytes());
        Self {
            path,
            relative: relative.to_owned(),
            text,
            hash,
        }
    }
}

/// What [`discover`] found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// The workflows, sorted by name.
    pub files: Vec<WorkflowFile>,
    /// Entries that are not read, and why (a symbolic link, not a file, not UTF-8).
    pub skipped: Vec<(String, String)>,
}

/// The workflows of the repository at `root`. A repository without workflows gives none.
pub fn discover(root: &Path) -> Result<Discovery, Error> {
    let dir = root.join(WORKFLOWS_DIR);
    let mut found = Discovery::default();
    // A checkout can carry a `.github` (or `workflows`) that is a link to somewhere else;
    // following it would rewrite files outside the repository (red-team finding).
    for folder in [root.join(".github"), dir.clone()] {
        match std::fs::symlink_metadata(&folder) {
            Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => {
                return Err(Error::Read {
                    path: folder,
                    source: std::io::Error::other(
                        "it is not a folder of the repository (a symbolic link, or a file); not followed, so that nothing outside the repository is rewritten",
                    ),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(source) => {
                return Err(Error::Read {
                    path: folder,
                    source,
                });
            }
        }
    }
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(source) => return Err(Error::Read { path: dir, source }),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.clone(),
            source,
        })?;
        paths.push(entry.path());
    }
    paths.sort();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let extension = Path::new(name).extension().and_then(|e| e.to_str());
        if !extension
            .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
        {
            continue;
        }
        let relative = format!("{WORKFLOWS_DIR}/{name}");
        let meta = std::fs::symlink_metadata(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        if let Some(what) = crate::fs::not_regular(&meta.file_type()) {
            found
                .skipped
                .push((relative, format!("{what}: not followed")));
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => found
                .files
                .push(WorkflowFile::new(path.clone(), &relative, text)),
            Err(_) => found.skipped.push((
                relative,
                "not UTF-8 text: GitHub would not read it".to_owned(),
            )),
        }
    }
    Ok(found)
}

/// Which program reads an environment variable, which decides the new variables' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFamily {
    /// containerboot and the `tailscale` CLI: `TS_CLIENT_ID` + `TS_AUDIENCE`.
    Tailscale,
    /// Tailscale's Terraform provider: `TAILSCALE_OAUTH_CLIENT_ID` + `TAILSCALE_AUDIENCE`.
    Terraform,
}

impl EnvFamily {
    /// The family of a variable that holds a credential, if it is one.
    #[must_use]
    pub fn of_secret_var(name: &str) -> Option<Self> {
        match name {
            "TS_AUTHKEY"
            | "TS_AUTH_KEY"
            | "TS_OAUTH_SECRET"
            | "TS_OAUTH_CLIENT_SECRET"
            | "TS_CLIENT_SECRET"
            | "TAILSCALE_AUTHKEY" => Some(Self::Tailscale),
            "TAILSCALE_API_KEY" | "TAILSCALE_OAUTH_CLIENT_SECRET" => Some(Self::Terraform),
            _ => None,
        }
    }

    /// The variable that carries the identity's ID.
    #[must_use]
    pub fn id_var(self) -> &'static str {
        match self {
            Self::Tailscale => "TS_CLIENT_ID",
            Self::Terraform => "TAILSCALE_OAUTH_CLIENT_ID",
        }
    }

    /// The variable that carries the audience.
    #[must_use]
    pub fn audience_var(self) -> &'static str {
        match self {
            Self::Tailscale => "TS_AUDIENCE",
            Self::Terraform => "TAILSCALE_AUDIENCE",
        }
    }

    /// Variables next to the secret that carry the old client ID, replaced by [`Self::id_var`].
    fn id_siblings(self) -> &'static [&'static str] {
        match self {
            Self::Tailscale => &["TS_CLIENT_ID", "TS_OAUTH_CLIENT_ID"],
            Self::Terraform => &["TAILSCALE_OAUTH_CLIENT_ID"],
        }
    }
}

/// How a workflow passes a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteKind {
    /// `tailscale/github-action`'s `authkey` input.
    ActionAuthKey,
    /// `tailscale/github-action`'s `oauth-secret` input.
    ActionOAuthSecret,
    /// An environment variable.
    Env {
        /// The variable.
        name: String,
        /// Who reads it.
        family: EnvFamily,
    },
}

impl fmt::Display for SiteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ActionAuthKey => f.write_str("tailscale/github-action input `authkey`"),
            Self::ActionOAuthSecret => f.write_str("tailscale/github-action input `oauth-secret`"),
            Self::Env { name, .. } => write!(f, "environment variable `{name}`"),
        }
    }
}

/// A place in a workflow that passes a Tailscale credential from a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The workflow, relative to the repository.
    pub file: String,
    /// 1-based line of the key.
    pub line: usize,
    /// The secret's name.
    pub secret: String,
    /// The job, or `None` for the workflow's own `env:`.
    pub job: Option<String>,
    /// The shape.
    pub kind: SiteKind,
}

/// A change tsrotate cannot make, spelled out for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manual {
    /// The workflow, relative to the repository.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What to change.
    pub change: String,
}

/// Something the user should know about a rewrite that tsrotate did make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The workflow, relative to the repository.
    pub file: String,
    /// What to know.
    pub text: String,
}

/// The rewrite of one workflow.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The workflow.
    pub file: String,
    /// The new text.
    pub after: String,
    /// The places rewritten.
    pub sites: Vec<Site>,
    /// What the user has to change by hand.
    pub manual: Vec<Manual>,
    /// What the user should know.
    pub notes: Vec<Note>,
    /// The subjects the consuming jobs present.
    pub needs: Vec<Need>,
}

/// What decides subjects that the files do not say.
#[derive(Debug, Clone)]
pub struct Options {
    /// The repository the workflows belong to.
    pub repo: Repo,
    /// The default branch (where `schedule` runs).
    pub default_branch: String,
}

/// Every place in `file` that passes a Tailscale credential from a secret, whichever secret.
pub fn sites(file: &WorkflowFile) -> Result<Vec<Site>, Error> {
    let doc = Doc::new(file)?;
    Ok(doc.find()?.into_iter().map(|found| found.site).collect())
}

/// Rewrite `file` so that every place passing secret `secret` uses `identity`; `None` when the
/// file does not mention the secret at all.
pub fn migrate(
    file: &WorkflowFile,
    secret: &str,
    identity: &Identity,
    options: &Options,
) -> Result<Option<Migration>, Error> {
    let doc = Doc::new(file)?;
    let mentions = doc.mentions(secret);
    if mentions.is_empty() {
        return Ok(None);
    }
    let found: Vec<Found> = doc
        .find()?
        .into_iter()
        .filter(|f| f.site.secret == secret)
        .collect();
    let mut plan = Plan::default();
    let mut expected = doc.value.clone();
    for f in &found {
        doc.plan_site(f, identity, &mut plan, &mut expected)?;
    }
    let site_lines: BTreeSet<usize> = found.iter().map(|f| f.line).collect();
    let mut manual: Vec<Manual> = mentions
        .into_iter()
        .filter(|line| !site_lines.contains(line))
        .map(|line| Manual {
            file: file.relative.clone(),
            line: line + 1,
            change: format!(
                "`{}` reads secret {secret} in a way tsrotate cannot rewrite: pass the identity instead (ID `{}`, audience `{}`, with `id-token: write`), or remove the use",
                doc.line_text(line).trim(),
                identity.client_id,
                identity.audience
            ),
        })
        .collect();
    let mut notes = Vec::new();
    let mut needs = Vec::new();
    let consuming: BTreeSet<String> = if found.iter().any(|f| f.site.job.is_none()) {
        doc.job_names().into_iter().collect()
    } else {
        found.iter().filter_map(|f| f.site.job.clone()).collect()
    };
    for job in &consuming {
        doc.plan_permissions(job, &mut plan, &mut expected, &mut manual, &mut notes)?;
        needs.extend(doc.needs(job, options));
    }
    let after = plan.apply(doc.text, doc.eol);
    doc.verify(&after, &expected)?;
    Ok(Some(Migration {
        file: file.relative.clone(),
        after,
        sites: found.into_iter().map(|f| f.site).collect(),
        manual,
        notes,
        needs,
    }))
}

/// Replace `${{ secrets.NAME }}`, or `None` when `value` is not exactly that (quotes allowed).
fn secret_ref(value: &str) -> Option<String> {
    let value = value.trim();
    let value = unquote(value).unwrap_or(value);
    let inner = value.strip_prefix("${{")?.strip_suffix("}}")?.trim();
    let name = inner
        .strip_prefix("secrets.")
        .or_else(|| {
            inner
                .strip_prefix("secrets['")
                .and_then(|r| r.strip_suffix("']"))
        })
        .or_else(|| {
            inner
                .strip_prefix("secrets[\"")
                .and_then(|r| r.strip_suffix("\"]"))
        })?;
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then(|| name.to_owned())
}

fn unquote(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        Some(&value[1..value.len() - 1])
    } else {
        None
    }
}

/// A scalar as YAML text: plain when it cannot be read as anything but that string.
fn scalar(value: &str) -> String {
    let plain = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_' | ':'))
        && !value.contains(": ")
        && !value.ends_with(':')
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// One line of the file.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    /// Before the line ending.
    end: usize,
    indent: usize,
    /// Not blank, not a comment, not a document marker.
    content: bool,
}

/// A `key: value` entry of a block mapping.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    col: usize,
    key: String,
    /// The value written on the key's line, comment removed.
    value: String,
    /// One past the entry's last content line.
    end: usize,
}

/// A site as found: its line and the entries needed to rewrite it.
#[derive(Debug, Clone)]
struct Found {
    site: Site,
    line: usize,
    col: usize,
    /// The semantic path of the mapping holding the key.
    path: Vec<PathPart>,
    /// Sibling entries of the same mapping.
    siblings: Vec<Entry>,
}

#[derive(Debug, Clone)]
enum PathPart {
    Key(String),
    Index(usize),
}

/// Edits by byte range, applied from the end.
#[derive(Debug, Default)]
struct Plan {
    edits: Vec<(usize, usize, String)>,
}

impl Plan {
    fn replace(&mut self, start: usize, end: usize, text: String) {
        if !self.edits.iter().any(|(s, e, _)| *s == start && *e == end) {
            self.edits.push((start, end, text));
        }
    }

    fn apply(mut self, text: &str, eol: &str) -> String {
        self.edits.sort_by_key(|(s, e, _)| (*s, *e));
        let mut out = String::with_capacity(text.len() + 256);
        let mut at = 0;
        for (start, end, new) in &self.edits {
            out.push_str(&text[at..*start]);
            if *start == text.len() && !text.is_empty() && !text.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str(new);
            at = *end;
        }
        out.push_str(&text[at..]);
        out
    }
}

/// A workflow's text with a line index, and its parsed document.
struct Doc<'a> {
    file: &'a str,
    text: &'a str,
    lines: Vec<Line>,
    eol: &'static str,
    value: Value,
}

impl<'a> Doc<'a> {
    fn new(file: &'a WorkflowFile) -> Result<Self, Error> {
        let text = file.text.as_str();
        let value: Value = serde_yaml_ng::from_str(text).map_err(|e| Error::Parse {
            file: file.relative.clone(),
            message: e.to_string(),
        })?;
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let mut lines = Vec::new();
        let mut start = 0;
        for raw in text.split_inclusive('\n') {
            let body = raw.trim_end_matches('\n').trim_end_matches('\r');
            let indent = body.len() - body.trim_start_matches(' ').len();
            let rest = &body[indent..];
            let content = !(rest.is_empty()
                || rest.starts_with('#')
                || rest == "---"
                || rest.starts_with("--- ")
                || rest.starts_with('%'));
            lines.push(Line {
                start,
                end: start + body.len(),
                indent,
                content,
            });
            start += raw.len();
        }
        Ok(Self {
            file: &file.relative,
            text,
            lines,
            eol,
            value,
        })
    }

    fn unsupported(&self, line: usize, what: impl Into<String>) -> Error {
        Error::Unsupported {
            file: self.file.to_owned(),
            line: line + 1,
            what: what.into(),
        }
    }

    fn line_text(&self, i: usize) -> &str {
        &self.text[self.lines[i].start..self.lines[i].end]
    }

    /// The text of line `i` from column `col`.
    fn rest(&self, i: usize, col: usize) -> &str {
        let l = self.lines[i];
        if l.start + col > l.end {
            ""
        } else {
            &self.text[l.start + col..l.end]
        }
    }

    fn next_content(&self, from: usize, limit: usize) -> Option<usize> {
        (from..limit).find(|&i| self.lines[i].content)
    }

    fn is_dash(&self, i: usize, col: usize) -> bool {
        let rest = self.rest(i, col);
        rest == "-" || rest.starts_with("- ")
    }

    /// The block mapping whose first key is at (`line`, `col`), up to line `limit`.
    fn mapping(&self, line: usize, col: usize, limit: usize) -> Result<Vec<Entry>, Error> {
        let mut out = Vec::new();
        let mut at = line;
        loop {
            let (key, value) = self.key_at(at, col)?;
            let mut last = at;
            let mut m = at + 1;
            while m < limit {
                let l = self.lines[m];
                if !l.content {
                    m += 1;
                    continue;
                }
                if l.indent > col || (l.indent == col && self.is_dash(m, col)) {
                    last = m;
                    m += 1;
                    continue;
                }
                break;
            }
            out.push(Entry {
                line: at,
                col,
                key,
                value,
                end: last + 1,
            });
            if m < limit && self.lines[m].indent == col {
                at = m;
            } else {
                return Ok(out);
            }
        }
    }

    fn key_at(&self, line: usize, col: usize) -> Result<(String, String), Error> {
        let rest = self.rest(line, col);
        let (key, after) = if let Some(q @ ('"' | '\'')) = rest.chars().next() {
            let close = rest[1..]
                .find(q)
                .ok_or_else(|| self.unsupported(line, "a quoted key spans lines"))?;
            (rest[1..=close].to_owned(), &rest[close + 2..])
        } else {
            let colon = rest
                .find(": ")
                .or_else(|| rest.ends_with(':').then(|| rest.len() - 1))
                .ok_or_else(|| self.unsupported(line, "expected `key: value`"))?;
            (rest[..colon].trim_end().to_owned(), &rest[colon..])
        };
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| self.unsupported(line, "expected `key: value`"))?;
        let value = match after.find(" #") {
            Some(i) if !after.trim_start().starts_with(['"', '\'']) => &after[..i],
            _ => after,
        };
        Ok((key, value.trim().to_owned()))
    }

    /// The block children of `entry`: a mapping or a sequence, starting at (line, col).
    fn child(&self, entry: &Entry) -> Option<(usize, usize, bool)> {
        if !entry.value.is_empty() {
            return None;
        }
        let first = self.next_content(entry.line + 1, entry.end)?;
        let col = self.lines[first].indent;
        Some((first, col, self.is_dash(first, col)))
    }

    fn child_mapping(&self, entry: &Entry) -> Result<Vec<Entry>, Error> {
        match self.child(entry) {
            Some((line, col, false)) => self.mapping(line, col, entry.end),
            Some((line, _, true)) => Err(self.unsupported(line, "expected a mapping here")),
            None if entry.value.is_empty() => Ok(Vec::new()),
            None => Err(self.unsupported(
                entry.line,
                format!("`{}` is written inline (flow style)", entry.key),
            )),
        }
    }

    /// The items of the block sequence under `entry`, each as (dash line, first key column).
    fn child_sequence(&self, entry: &Entry) -> Result<Vec<(usize, usize, usize)>, Error> {
        let Some((first, col, true)) = self.child(entry) else {
            return Err(self.unsupported(entry.line, format!("`{}` is not a list", entry.key)));
        };
        let mut starts = Vec::new();
        for i in first..entry.end {
            let l = self.lines[i];
            if l.content && l.indent == col && self.is_dash(i, col) {
                starts.push(i);
            }
        }
        let mut items = Vec::new();
        for (n, &dash) in starts.iter().enumerate() {
            let limit = starts.get(n + 1).copied().unwrap_or(entry.end);
            let after = &self.rest(dash, col)[1..];
            let spaces = after.len() - after.trim_start_matches(' ').len();
            if after.trim().is_empty() {
                let Some(first_key) = self.next_content(dash + 1, limit) else {
                    continue;
                };
                items.push((first_key, self.lines[first_key].indent, limit));
            } else {
                items.push((dash, col + 1 + spaces, limit));
            }
        }
        Ok(items)
    }

    fn top(&self) -> Result<Vec<Entry>, Error> {
        match self.next_content(0, self.lines.len()) {
            Some(first) => self.mapping(first, self.lines[first].indent, self.lines.len()),
            None => Ok(Vec::new()),
        }
    }

    fn jobs(&self) -> Result<Vec<(Entry, Vec<Entry>)>, Error> {
        let top = self.top()?;
        let Some(jobs) = top.iter().find(|e| e.key == "jobs") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for job in self.child_mapping(jobs)? {
            let entries = self.child_mapping(&job)?;
            out.push((job, entries));
        }
        Ok(out)
    }

    fn job_names(&self) -> Vec<String> {
        self.value
            .get("jobs")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.keys()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Lines (0-based) whose text refers to secret `name` in an expression.
    fn mentions(&self, name: &str) -> Vec<usize> {
        let patterns = [
            format!("secrets.{name}"),
            format!("secrets['{name}']"),
            format!("secrets[\"{name}\"]"),
        ];
        (0..self.lines.len())
            .filter(|&i| {
                let text = self.line_text(i);
                patterns.iter().any(|p| {
                    text.match_indices(p.as_str()).any(|(at, _)| {
                        // `secrets.TS_KEY` must not count as a mention of `TS_KEY_OLD`'s prefix.
                        text[at + p.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
                    })
                })
            })
            .collect()
    }

    fn find(&self) -> Result<Vec<Found>, Error> {
        let mut out = Vec::new();
        let top = self.top()?;
        if let Some(env) = top.iter().find(|e| e.key == "env") {
            self.find_env(env, None, &[PathPart::Key("env".into())], &mut out)?;
        }
        for (job, entries) in self.jobs()? {
            let job_path = vec![PathPart::Key("jobs".into()), PathPart::Key(job.key.clone())];
            if let Some(env) = entries.iter().find(|e| e.key == "env") {
                let mut path = job_path.clone();
                path.push(PathPart::Key("env".into()));
                self.find_env(env, Some(&job.key), &path, &mut out)?;
            }
            let Some(steps) = entries.iter().find(|e| e.key == "steps") else {
                continue;
            };
            for (index, (line, col, limit)) in self.child_sequence(steps)?.into_iter().enumerate() {
                let step = self.mapping(line, col, limit)?;
                let mut step_path = job_path.clone();
                step_path.extend([PathPart::Key("steps".into()), PathPart::Index(index)]);
                if let Some(env) = step.iter().find(|e| e.key == "env") {
                    let mut path = step_path.clone();
                    path.push(PathPart::Key("env".into()));
                    self.find_env(env, Some(&job.key), &path, &mut out)?;
                }
                let is_action = step.iter().any(|e| {
                    e.key == "uses" && {
                        let uses = unquote(&e.value).unwrap_or(&e.value);
                        uses == "tailscale/github-action"
                            || uses.starts_with("tailscale/github-action@")
                    }
                });
                let Some(with) = step.iter().find(|e| e.key == "with").filter(|_| is_action) else {
                    continue;
                };
                let inputs = self.child_mapping(with)?;
                for input in &inputs {
                    let kind = match input.key.as_str() {
                        "authkey" => SiteKind::ActionAuthKey,
                        "oauth-secret" => SiteKind::ActionOAuthSecret,
                        _ => continue,
                    };
                    let Some(secret) = secret_ref(&input.value) else {
                        continue;
                    };
                    let mut path = step_path.clone();
                    path.push(PathPart::Key("with".into()));
                    out.push(Found {
                        site: Site {
                            file: self.file.to_owned(),
                            line: input.line + 1,
                            secret,
                            job: Some(job.key.clone()),
                            kind,
                        },
                        line: input.line,
                        col: input.col,
                        path,
                        siblings: inputs.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn find_env(
        &self,
        env: &Entry,
        job: Option<&str>,
        path: &[PathPart],
        out: &mut Vec<Found>,
    ) -> Result<(), Error> {
        if !env.value.is_empty() {
            // `env: ${{ fromJSON(...) }}` or a flow mapping: not ours to read.
            return Ok(());
        }
        let vars = self.child_mapping(env)?;
        for var in &vars {
            let Some(family) = EnvFamily::of_secret_var(&var.key) else {
                continue;
            };
            let Some(secret) = secret_ref(&var.value) else {
                continue;
            };
            out.push(Found {
                site: Site {
                    file: self.file.to_owned(),
                    line: var.line + 1,
                    secret,
                    job: job.map(str::to_owned),
                    kind: SiteKind::Env {
                        name: var.key.clone(),
                        family,
                    },
                },
                line: var.line,
                col: var.col,
                path: path.to_vec(),
                siblings: vars.clone(),
            });
        }
        Ok(())
    }

    /// Byte range of line `i` from `col` to its end (not the line ending).
    fn span(&self, i: usize, col: usize) -> (usize, usize) {
        (self.lines[i].start + col, self.lines[i].end)
    }

    fn plan_site(
        &self,
        found: &Found,
        identity: &Identity,
        plan: &mut Plan,
        expected: &mut Value,
    ) -> Result<(), Error> {
        let (id_key, audience_key, id_siblings): (&str, &str, &[&str]) = match &found.site.kind {
            SiteKind::ActionAuthKey | SiteKind::ActionOAuthSecret => {
                ("oauth-client-id", "audience", &["oauth-client-id"])
            }
            SiteKind::Env { family, .. } => {
                (family.id_var(), family.audience_var(), family.id_siblings())
            }
        };
        let secret_key = match &found.site.kind {
            SiteKind::ActionAuthKey => "authkey",
            SiteKind::ActionOAuthSecret => "oauth-secret",
            SiteKind::Env { name, .. } => name.as_str(),
        };
        if found.siblings.iter().any(|e| e.key == audience_key) {
            return Err(self.unsupported(
                found.line,
                format!("`{audience_key}` is already set next to the secret"),
            ));
        }
        let pad = " ".repeat(found.col);
        let id_line = format!("{id_key}: {}", scalar(&identity.client_id));
        let audience_line = format!("{audience_key}: {}", scalar(&identity.audience));
        let sibling = found
            .siblings
            .iter()
            .find(|e| id_siblings.contains(&e.key.as_str()));
        let (start, end) = self.span(found.line, found.col);
        if let Some(sibling) = sibling {
            let (s, e) = self.span(sibling.line, sibling.col);
            plan.replace(s, e, id_line);
            plan.replace(start, end, audience_line);
        } else {
            plan.replace(
                start,
                end,
                format!("{id_line}{}{pad}{audience_line}", self.eol),
            );
        }
        let Some(Value::Mapping(map)) = get_mut(expected, &found.path) else {
            return Err(self.unsupported(found.line, "the mapping holding the secret"));
        };
        map.remove(secret_key);
        for s in id_siblings {
            map.remove(*s);
        }
        map.insert(id_key.into(), identity.client_id.clone().into());
        map.insert(audience_key.into(), identity.audience.clone().into());
        Ok(())
    }

    fn plan_permissions(
        &self,
        job: &str,
        plan: &mut Plan,
        expected: &mut Value,
        manual: &mut Vec<Manual>,
        notes: &mut Vec<Note>,
    ) -> Result<(), Error> {
        let jobs = self.jobs()?;
        let Some((job_entry, entries)) = jobs.iter().find(|(e, _)| e.key == job) else {
            return Ok(());
        };
        let job_path = [PathPart::Key("jobs".into()), PathPart::Key(job.to_owned())];
        let Some(Value::Mapping(job_map)) = get_mut(expected, &job_path) else {
            return Err(self.unsupported(job_entry.line, format!("job `{job}` is not a mapping")));
        };
        let unit = entries
            .first()
            .map_or(2, |e| e.col.saturating_sub(job_entry.col).max(1));
        if let Some(perms) = entries.iter().find(|e| e.key == "permissions") {
            let value = job_map.get("permissions").cloned().unwrap_or(Value::Null);
            return self.merge_permissions(perms, &value, job, plan, job_map, manual);
        }
        let top = self.value.get("permissions");
        let mut block: Vec<(String, String)> = Vec::new();
        match top {
            None => {
                block.push(("contents".into(), "read".into()));
                notes.push(Note {
                    file: self.file.to_owned(),
                    text: format!(
                        "job `{job}` had the repository's default token permissions; it now has `contents: read` and `id-token: write` only: add any other permission it needs (packages, pull-requests, ...)"
                    ),
                });
            }
            Some(Value::String(s)) if s == "write-all" => return Ok(()),
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    if let (Some(k), Some(v)) = (k.as_str(), v.as_str())
                        && k != "id-token"
                    {
                        block.push((k.to_owned(), v.to_owned()));
                    }
                }
                notes.push(Note {
                    file: self.file.to_owned(),
                    text: format!(
                        "job `{job}` got its own permissions block: the workflow's entries and `id-token: write`"
                    ),
                });
            }
            Some(_) => {
                manual.push(Manual {
                    file: self.file.to_owned(),
                    line: job_entry.line + 1,
                    change: format!(
                        "give job `{job}` a `permissions:` block with `id-token: write` and the permissions it needs (the workflow's `permissions` is not a mapping tsrotate can copy)"
                    ),
                });
                return Ok(());
            }
        }
        block.push(("id-token".into(), "write".into()));
        let pad = " ".repeat(job_entry.col + unit);
        let inner = " ".repeat(job_entry.col + 2 * unit);
        let mut text = format!("{pad}permissions:{}", self.eol);
        let mut map = Mapping::new();
        for (k, v) in &block {
            let _ = write!(text, "{inner}{k}: {}{}", scalar(v), self.eol);
            map.insert(k.clone().into(), v.clone().into());
        }
        // Before `steps:` reads best; a job without steps gets it after its last entry.
        let at = match entries.iter().find(|e| e.key == "steps") {
            Some(steps) => self.lines[steps.line].start,
            None => self.after(entries.last().map_or(job_entry.end, |e| e.end)),
        };
        plan.replace(at, at, text);
        job_map.insert("permissions".into(), Value::Mapping(map));
        Ok(())
    }

    /// The byte offset where a line inserted after line `end - 1` starts.
    fn after(&self, end: usize) -> usize {
        self.lines.get(end).map_or(self.text.len(), |l| l.start)
    }

    fn merge_permissions(
        &self,
        perms: &Entry,
        value: &Value,
        job: &str,
        plan: &mut Plan,
        job_map: &mut Mapping,
        manual: &mut Vec<Manual>,
    ) -> Result<(), Error> {
        match value {
            Value::String(s) if s == "write-all" => Ok(()),
            Value::Mapping(m) if perms.value.is_empty() => {
                if m.get("id-token").and_then(Value::as_str) == Some("write") {
                    return Ok(());
                }
                let children = self.child_mapping(perms)?;
                let mut m = m.clone();
                m.insert("id-token".into(), "write".into());
                if let Some(existing) = children.iter().find(|e| e.key == "id-token") {
                    let (s, e) = self.span(existing.line, existing.col);
                    plan.replace(s, e, "id-token: write".to_owned());
                } else if let Some(last) = children.last() {
                    let at = self.after(last.end);
                    plan.replace(
                        at,
                        at,
                        format!("{}id-token: write{}", " ".repeat(last.col), self.eol),
                    );
                } else {
                    return Err(self.unsupported(perms.line, "an empty `permissions:` block"));
                }
                job_map.insert("permissions".into(), Value::Mapping(m));
                Ok(())
            }
            _ => {
                manual.push(Manual {
                    file: self.file.to_owned(),
                    line: perms.line + 1,
                    change: format!(
                        "add `id-token: write` to the permissions of job `{job}` (written as `{}`, which tsrotate does not merge into)",
                        perms.value
                    ),
                });
                Ok(())
            }
        }
    }

    /// The subjects job `job` presents.
    fn needs(&self, job: &str, options: &Options) -> Vec<Need> {
        let repo = &options.repo;
        let consumer = format!("{} job {job}", self.file);
        let need = |pattern: String, broad: Option<String>| Need {
            pattern,
            consumer: consumer.clone(),
            broad,
        };
        let job_value = self.value.get("jobs").and_then(|j| j.get(job));
        let environment = job_value.and_then(|j| j.get("environment")).and_then(|e| {
            e.as_str()
                .or_else(|| e.get("name").and_then(Value::as_str))
                .map(str::to_owned)
        });
        if let Some(env) = environment {
            return vec![if env.contains("${{") {
                need(
                    format!("repo:{repo}:environment:*"),
                    Some(format!(
                        "the environment is an expression (`{env}`), so any environment"
                    )),
                )
            } else if env.contains('*') {
                // A subject pattern has no way to spell a literal `*`: the pattern is as
                // broad as a wildcard there, and the plan must say so.
                need(
                    format!("repo:{repo}:environment:{env}"),
                    Some(format!(
                        "the environment name `{env}` holds `*`, which a subject pattern reads as any text"
                    )),
                )
            } else {
                need(format!("repo:{repo}:environment:{env}"), None)
            }];
        }
        let on = self
            .value
            .get("on")
            .or_else(|| self.value.get(Value::Bool(true)));
        let events: Vec<(String, Option<&Value>)> = match on {
            Some(Value::String(e)) => vec![(e.clone(), None)],
            Some(Value::Sequence(s)) => s
                .iter()
                .filter_map(Value::as_str)
                .map(|e| (e.to_owned(), None))
                .collect(),
            Some(Value::Mapping(m)) => m
                .iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), Some(v))))
                .collect(),
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        for (event, config) in events {
            let filter = |name: &str| -> Option<Vec<String>> {
                config
                    .and_then(|c| c.get(name))
                    .and_then(Value::as_sequence)
                    .map(|s| {
                        s.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
            };
            let has = |name: &str| config.and_then(|c| c.get(name)).is_some();
            match event.as_str() {
                "push" => {
                    let branches = filter("branches");
                    let tags = filter("tags");
                    if branches.is_none()
                        && tags.is_none()
                        && !has("branches-ignore")
                        && !has("tags-ignore")
                    {
                        out.push(need(
                            format!("repo:{repo}:ref:*"),
                            Some("`push` without branch or tag filters runs for any ref".into()),
                        ));
                    }
                    for (kind, list, ignore) in [
                        ("heads", branches, "branches-ignore"),
                        ("tags", tags, "tags-ignore"),
                    ] {
                        if has(ignore) {
                            out.push(need(
                                format!("repo:{repo}:ref:refs/{kind}/*"),
                                Some(format!("`{ignore}` allows every other ref")),
                            ));
                        }
                        for name in list.unwrap_or_default() {
                            out.push(ref_need(repo, kind, &name, &need));
                        }
                    }
                }
                "pull_request" => out.push(need(format!("repo:{repo}:pull_request"), None)),
                "schedule" => out.push(need(
                    format!("repo:{repo}:ref:refs/heads/{}", options.default_branch),
                    None,
                )),
                "workflow_dispatch" => out.push(need(
                    format!("repo:{repo}:ref:*"),
                    Some("`workflow_dispatch` can run it on any branch or tag".into()),
                )),
                "release" => out.push(need(
                    format!("repo:{repo}:ref:refs/tags/*"),
                    Some("`release` runs for any release's tag".into()),
                )),
                "workflow_call" => out.push(need(
                    format!("repo:{repo}:*"),
                    Some(
                        "a reusable workflow presents its caller's subject (callers in other repositories need their own identity)"
                            .into(),
                    ),
                )),
                other => out.push(need(
                    format!("repo:{repo}:ref:*"),
                    Some(format!(
                        "`{other}` runs on a ref tsrotate cannot predict from the workflow"
                    )),
                )),
            }
        }
        out
    }

    /// Parse `after` and compare it with the document the edits were meant to produce.
    fn verify(&self, after: &str, expected: &Value) -> Result<(), Error> {
        let parsed: Result<Value, _> = serde_yaml_ng::from_str(after);
        match parsed {
            Ok(v) if v == *expected => Ok(()),
            _ => Err(self.unsupported(
                0,
                "the layout is beyond a safe minimal edit (the rewritten file did not read back as intended)",
            )),
        }
    }
}

fn ref_need(
    repo: &Repo,
    kind: &str,
    name: &str,
    need: &dyn Fn(String, Option<String>) -> Need,
) -> Need {
    if name.contains(['?', '[', ']', '+', '!']) {
        return need(
            format!("repo:{repo}:ref:refs/{kind}/*"),
            Some(format!(
                "filter `{name}` uses glob syntax a subject pattern cannot express"
            )),
        );
    }
    let mut pattern = name.replace("**", "*");
    while pattern.contains("**") {
        pattern = pattern.replace("**", "*");
    }
    let broad = pattern
        .contains('*')
        .then(|| format!("filter `{name}` is a wildcard"));
    need(format!("repo:{repo}:ref:refs/{kind}/{pattern}"), broad)
}

fn get_mut<'v>(value: &'v mut Value, path: &[PathPart]) -> Option<&'v mut Value> {
    let mut at = value;
    for part in path {
        at = match part {
            PathPart::Key(k) => at.get_mut(k.as_str())?,
            PathPart::Index(i) => at.get_mut(*i)?,
        };
    }
    Some(at)
}

#[cfg(test)]
mod tests;
