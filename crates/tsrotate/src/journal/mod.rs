//! The rotation journal: one append-only file of JSON lines per rotation.
//!
//! A rotation's side effects (minting a key, writing a file, revoking a key) happen in a
//! world we do not control, and the process can die between any two of them. So every side
//! effect is announced by an *intent* record before it happens and confirmed by an *outcome*
//! record after, each fsync'd before the next step. Replaying the records
//! ([`crate::rotate::State::replay`]) tells `resume` exactly what may have happened.
//!
//! # Format
//!
//! `<state dir>/rotations/<rotation id>.jsonl`, mode 0600 in a 0700 folder. Each line is
//! `{"v": 1, "seq": N, "at": "<RFC 3339>", "event": {...}}`. The first event is `started`.
//! A reader refuses a version it does not know. A torn last line (the process died while
//! writing it) is ignored; damage anywhere else is an error.
//!
//! # Security
//!
//! The journal holds key IDs, fingerprints, paths and error messages, never a secret value.
//! [`Event`] cannot hold a [`crate::key::Secret`]: it is `Serialize` and `Secret` is not.

mod event;
mod index;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

pub use event::{
    AuthKeyTemplate, ClientTemplate, CommandDigest, CredentialVerify, Event, OldKey, SinkPlan,
    Started, Template, TokenTemplate,
};
pub use index::{Damaged, Index, Rotation};

/// The journal format this version writes and understands.
pub const FORMAT_VERSION: u32 = 1;

/// What can go wrong reading or writing a journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("journal {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What happened.
        #[source]
        source: io::Error,
    },
    /// A line is not a record this version understands.
    #[error("journal {path} line {line} is damaged: {problem}")]
    Damaged {
        /// The journal.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// Written by a newer tsrotate.
    #[error(
        "journal {path} has format version {version}; this tsrotate understands {FORMAT_VERSION}"
    )]
    NewerVersion {
        /// The journal.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// No rotation with that ID.
    #[error("no rotation `{0}` in the journal")]
    UnknownRotation(String),
    /// Creating the journal's folder or file, or appending to it, failed (through
    /// [`crate::fs`], which names the file and what was being done).
    #[error("journal: {0}")]
    File(#[from] crate::fs::Error),
}

/// What one kind of journal records: a rotation's [`Event`]s, or another operation's that
/// needs the same crash safety (a containment's device actions, `crate::contain::act`). The
/// format, durability and torn-line rules are the same for every kind.
pub trait Entry: serde::Serialize + serde::de::DeserializeOwned {
    /// Whether this record is the plan every journal of this kind starts with.
    fn opens(&self) -> bool;
    /// The name of that first record, for messages.
    const OPENING: &'static str;
}

impl Entry for Event {
    fn opens(&self) -> bool {
        matches!(self, Event::Started(_))
    }
    const OPENING: &'static str = "started";
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "E: Entry")]
struct Line<E> {
    v: u32,
    seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    event: E,
}

/// One record read back from a journal.
#[derive(Debug, Clone)]
pub struct Record<E = Event> {
    /// Position in the journal, from 0.
    pub seq: u64,
    /// When it was written.
    pub at: OffsetDateTime,
    /// What it says.
    pub event: E,
}

/// A journal open for appending.
pub struct Journal<E = Event> {
    path: PathBuf,
    file: File,
    next_seq: u64,
    kind: std::marker::PhantomData<fn(E)>,
}

impl Journal {
    /// The journals folder under a state directory.
    #[must_use]
    pub fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join("rotations")
    }

    /// The journal file of a rotation.
    #[must_use]
    pub fn path_of(state_dir: &Path, rotation_id: &str) -> PathBuf {
        Self::dir(state_dir).join(format!("{rotation_id}.jsonl"))
    }

    /// Start a new journal with its `started` record.
    pub fn create(state_dir: &Path, started: Started) -> Result<Self, Error> {
        let id = started.rotation_id.clone();
        Self::create_in(
            &Self::dir(state_dir),
            &id,
            Event::Started(Box::new(started)),
        )
    }

    /// Open an existing journal for appending, returning it with its records. Only under the
    /// lock of the rotation's old key: it may cut off a torn last line or end an unterminated
    /// one.
    pub fn open(state_dir: &Path, rotation_id: &str) -> Result<(Self, Vec<Record>), Error> {
        let path = Self::path_of(state_dir, rotation_id);
        if !path.exists() {
            return Err(Error::UnknownRotation(rotation_id.to_owned()));
        }
        Self::open_at(&path)
    }
}

impl<E: Entry> Journal<E> {
    /// Start journal `<dir>/<id>.jsonl` with its first record (the plan), creating `dir`
    /// private if needed.
    pub fn create_in(dir: &Path, id: &str, first: E) -> Result<Self, Error> {
        crate::fs::create_private_dir_all(dir)?;
        let path = dir.join(format!("{id}.jsonl"));
        // The journal appears with its `started` record already in it (written and synced
        // beside it, then hard-linked into place, never over an existing journal): a process
        // killed at any moment never leaves an empty journal that `resume` could not make
        // sense of.
        crate::fs::write_new_private(&path, &line_bytes(&path, 0, first)?)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file,
            next_seq: 1,
            kind: std::marker::PhantomData,
        })
    }

    /// Open the journal at `path` for appending, returning it with its records. Only under
    /// the lock of what it concerns: it may cut off a torn last line or end an unterminated
    /// one.
    pub fn open_at(path: &Path) -> Result<(Self, Vec<Record<E>>), Error> {
        let path = path.to_owned();
        let (records, tail) = read_with_tail(&path)?;
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new().append(true).open(&path).map_err(io)?;
        // Whatever follows must start on a line of its own, or it would be glued to the end
        // and read as damage.
        match tail {
            Tail::Whole => {}
            Tail::Unterminated => file
                .write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(io)?,
            Tail::Torn { at } => file
                .set_len(at as u64)
                .and_then(|()| file.sync_data())
                .map_err(io)?,
        }
        let next_seq = records.last().map_or(0, |r| r.seq + 1);
        Ok((
            Self {
                path,
                file,
                next_seq,
                kind: std::marker::PhantomData,
            },
            records,
        ))
    }

    /// Append one record and make it durable before returning.
    pub fn append(&mut self, event: E) -> Result<(), Error> {
        let bytes = line_bytes(&self.path, self.next_seq, event)?;
        crate::fs::append_durable(&mut self.file, &self.path, &bytes)?;
        self.next_seq += 1;
        Ok(())
    }

    /// Where this journal lives.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Record `seq` of the journal at `path` (named in errors), as the line written for it.
fn line_bytes<E: Entry>(path: &Path, seq: u64, event: E) -> Result<Vec<u8>, Error> {
    let line = Line {
        v: FORMAT_VERSION,
        seq,
        at: OffsetDateTime::now_utc(),
        event,
    };
    let mut bytes = serde_json::to_vec(&line).map_err(|e| Error::Io {
        path: path.to_owned(),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Read every record of a journal file.
pub fn read(path: &Path) -> Result<Vec<Record>, Error> {
    read_as(path)
}

/// Read every record of a journal of another kind than a rotation's.
pub fn read_as<E: Entry>(path: &Path) -> Result<Vec<Record<E>>, Error> {
    read_with_tail(path).map(|(records, _)| records)
}

/// How a journal file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// With a newline, as every append leaves it.
    Whole,
    /// With a record missing only its newline (written by hand, or a short write that stopped
    /// exactly there): the record counts.
    Unterminated,
    /// With the start of a record the process died while appending, from byte `at`: it does
    /// not count (the intent before it already says its effect may have happened).
    Torn { at: usize },
}

/// Every record of a journal, and how it ends. A torn line can only be the last one and
/// without its newline (an append writes the newline last): a bad line anywhere else,
/// including a bad last line that has its newline, is damage.
fn read_with_tail<E: Entry>(path: &Path) -> Result<(Vec<Record<E>>, Tail), Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_with_tail(&bytes, path)
}

/// Every record of a journal's bytes; `path` names it in errors. What [`read_as`] does after
/// reading the file (public for the fuzz target: the journal is read from a state directory,
/// so its bytes are input).
pub fn parse<E: Entry>(bytes: &[u8], path: &Path) -> Result<Vec<Record<E>>, Error> {
    parse_with_tail(bytes, path).map(|(records, _)| records)
}

fn parse_with_tail<E: Entry>(bytes: &[u8], path: &Path) -> Result<(Vec<Record<E>>, Tail), Error> {
    let ends_whole = bytes.last().is_none_or(|&b| b == b'\n');
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if ends_whole {
        lines.pop(); // the empty piece after the final newline
    }
    let count = lines.len();
    let mut records = Vec::with_capacity(count);
    let mut tail = if ends_whole {
        Tail::Whole
    } else {
        Tail::Unterminated
    };
    for (i, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Line<E>>(line) {
            Ok(line) if line.v > FORMAT_VERSION => {
                return Err(Error::NewerVersion {
                    path: path.to_owned(),
                    version: line.v,
                });
            }
            Ok(line) => records.push(Record {
                seq: line.seq,
                at: line.at,
                event: line.event,
            }),
            Err(_) if i + 1 == count && !ends_whole => {
                tail = Tail::Torn {
                    at: bytes.len() - line.len(),
                };
            }
            Err(e) => {
                // Peek at the version so a newer format is reported as such.
                let version = serde_json::from_slice::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("v").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                if version > u64::from(FORMAT_VERSION) {
                    return Err(Error::NewerVersion {
                        path: path.to_owned(),
                        version: version as u32,
                    });
                }
                return Err(Error::Damaged {
                    path: path.to_owned(),
                    line: i + 1,
                    problem: format!(
                        "{} at column {}",
                        match e.classify() {
                            serde_json::error::Category::Io => "unreadable",
                            serde_json::error::Category::Syntax => "not JSON",
                            serde_json::error::Category::Data => "not a record this version knows",
                            serde_json::error::Category::Eof => "cut short",
                        },
                        e.column()
                    ),
                });
            }
        }
    }
    if !records.first().is_some_and(|r| r.event.opens()) {
        return Err(Error::Damaged {
            path: path.to_owned(),
            line: 1,
            problem: format!("does not start with a `{}` record", E::OPENING),
        });
    }
    Ok((records, tail))
}

/// The IDs of every rotation with a journal, oldest first.
pub fn list(state_dir: &Path) -> Result<Vec<String>, Error> {
    let dir = Journal::dir(state_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) {
            ids.push(id.to_owned());
        }
    }
    // Rotation IDs start with a UTC timestamp, so name order is time order.
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyId;

    fn started() -> Started {
        Started {
            rotation_id: "r20261128000000torn00".into(),
            tailnet: "-".into(),
            user: "test".into(),
            credential: None,
            old: OldKey {
                key_id: "kOLD1CNTRL".parse().unwrap(),
                kind: "auth-key".into(),
                fingerprint: None,
                metadata: None,
            },
            template: Template::AuthKey(AuthKeyTemplate {
                reusable: true,
                ephemeral: false,
                preauthorized: false,
                tags: Vec::new(),
                expiry_seconds: None,
                description: None,
            }),
            roots: Vec::new(),
            resolved_roots: Vec::new(),
            sinks: Vec::new(),
            revoke_first: false,
            verify_cmd: None,
            credential_verify: Vec::new(),
            not_updated: Vec::new(),
        }
    }

    #[test]
    fn records_appended_after_a_torn_line_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), started()).unwrap();
        let key: KeyId = "kOLD1CNTRL".parse().unwrap();
        journal
            .append(Event::RevokeIntent {
                key_id: key.clone(),
            })
            .unwrap();
        // The process dies halfway through its next append.
        journal.file.write_all(br#"{"v":1,"seq":2,"at":"#).unwrap();
        drop(journal);

        let (mut journal, records) = Journal::open(dir.path(), "r20261128000000torn00").unwrap();
        assert_eq!(records.len(), 2, "the torn line is not a record");
        for _ in 0..2 {
            journal
                .append(Event::Revoked {
                    key_id: key.clone(),
                    already: false,
                })
                .unwrap();
        }
        let records = read(journal.path()).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert!(matches!(records[3].event, Event::Revoked { .. }));
    }

    #[test]
    fn a_whole_record_missing_its_newline_is_kept_and_a_bad_terminated_line_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path(), started()).unwrap();
        let path = journal.path().to_owned();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        let one = text.trim_end_matches('\n').to_owned();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        // The `started` line again, as a second record, without its newline.
        file.write_all(one.replace("\"seq\":0", "\"seq\":1").as_bytes())
            .unwrap();
        drop(file);
        let (mut journal, records) = Journal::open(dir.path(), "r20261128000000torn00").unwrap();
        assert_eq!(records.len(), 2, "the unterminated record counts");
        journal.append(Event::RollbackStarted).unwrap();
        assert_eq!(read(&path).unwrap().len(), 3, "and nothing was glued to it");

        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"v\":1,\"seq\":3,\"at\":\n").unwrap();
        assert!(matches!(read(&path), Err(Error::Damaged { line: 4, .. })));
    }
}
