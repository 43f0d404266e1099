//! The audit log: one JSON line per step of every rotation, revocation and containment, for
//! the people who answer "who changed which key or device, when, where" after an incident.
//!
//! `<state dir>/audit.jsonl`, mode 0600, appended and fsync'd. It holds what the journal holds
//! (key IDs, fingerprints, paths, outcomes) plus who and when: never a secret.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

/// The audit log file, open for appending.
pub struct AuditLog {
    path: PathBuf,
    file: File,
}

#[derive(Serialize)]
struct Entry<'a, E: Serialize + ?Sized> {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_id: Option<&'a str>,
    event: &'a E,
}

impl AuditLog {
    /// The audit log's path under a state directory.
    #[must_use]
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("audit.jsonl")
    }

    /// Open (or create) the audit log.
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)?;
        let path = Self::path_in(state_dir);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Self { path, file })
    }

    /// Append one entry and make it durable. `event` is a rotation's journal event or a
    /// containment's step as [`crate::contain::act`] audits it: IDs, never secrets.
    pub fn append(
        &mut self,
        user: &str,
        rotation_id: Option<&str>,
        event: &(impl Serialize + ?Sized),
    ) -> std::io::Result<()> {
        let entry = Entry {
            at: OffsetDateTime::now_utc(),
            user,
            rotation_id,
            event,
        };
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }

    /// Where the log is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}
