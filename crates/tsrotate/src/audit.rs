//! The audit log: one JSON line per step of every rotation, revocation and containment, for
//! the people who answer "who changed which key or device, when, where" after an incident.
//!
//! `<state dir>/audit.jsonl`, mode 0600, appended and fsync'd through [`crate::fs`]'s helpers
//! (as the journal is; never through a symbolic link). It holds what the journal holds (key
//! IDs, fingerprints, paths, outcomes) plus who and when: never a secret. Unlike the journal it
//! is not sealed: it is a record for people, and nothing tsrotate does is decided by it.

use std::fs::File;
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

    /// Open (or create) the audit log. The error names the file and what the system said.
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        crate::fs::create_private_dir_all(state_dir).map_err(std::io::Error::other)?;
        let path = Self::path_in(state_dir);
        let file = crate::fs::open_append_private(&path).map_err(std::io::Error::other)?;
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
        crate::fs::append_durable(&mut self.file, &self.path, &line).map_err(std::io::Error::other)
    }

    /// Where the log is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}
