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
//! `{"v": 2, "seq": N, "at": "<RFC 3339>", "event": {...}, "mac": "<64 hex digits>"}`, the
//! `mac` last. The first event is `started`. A reader refuses a version it does not know. A
//! torn last line (the process died while writing it) is ignored; damage anywhere else is an
//! error.
//!
//! # Seals
//!
//! Every record is sealed with a [`JournalKey`] kept outside the state directory ([`seal`]
//! says how). [`read`], [`Journal::open`] and [`Journal::open_at`] return a journal only if
//! every record's seal verifies ([`Error::Unsealed`] otherwise): a journal that tsrotate did
//! not write with this key (planted, edited, renamed, copied from elsewhere, or written by a
//! version 1 tsrotate, which did not seal) is never acted on. [`read_any`] reads it anyway,
//! with its [`Seal`], for showing it; [`Journal::open_to_settle`] opens it for `abandon`.
//!
//! # Security
//!
//! The journal holds key IDs, fingerprints, paths and error messages, never a secret value.
//! [`Event`] cannot hold a [`crate::key::Secret`]: it is `Serialize` and `Secret` is not.
//! The journal key is never written into a journal.

mod event;
mod index;
mod path;
pub mod seal;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

pub use event::{
    AuthKeyTemplate, ClientTemplate, CommandDigest, CredentialVerify, Event, OldKey, SinkPlan,
    Started, Template, TokenTemplate,
};
pub use index::{Damaged, Index, Rotation};
pub use seal::{JournalKey, KeyFileError};

/// The journal format this version writes and understands. Version 1 had no seals: its
/// journals are read (to be shown) but never verify.
pub const FORMAT_VERSION: u32 = 2;

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
    /// A record's seal does not verify with this journal key: tsrotate did not write the
    /// journal as it is, with this key, so nothing is done from it.
    #[error("{}", unsealed_message(path, *line, *why))]
    Unsealed {
        /// The journal.
        path: PathBuf,
        /// The 1-based line of the first record that does not verify.
        line: usize,
        /// How.
        why: Broken,
    },
    /// No rotation with that ID.
    #[error("no rotation `{}` in the journal", crate::text::escape(.0))]
    UnknownRotation(String),
    /// Creating the journal's folder or file, or appending to it, failed (through
    /// [`crate::fs`], which names the file and what was being done).
    #[error("journal: {0}")]
    File(#[from] crate::fs::Error),
}

fn unsealed_message(path: &Path, line: usize, why: Broken) -> String {
    let path = crate::text::path(path);
    match why {
        Broken::Missing => format!(
            "journal {path} is not sealed (line {line} carries no seal): it was written by a tsrotate older than journal seals, or by something other than tsrotate"
        ),
        Broken::Mismatch if line == 1 => format!(
            "journal {path} is not sealed with this journal key: it was written with another key, renamed, or put there by something other than tsrotate"
        ),
        Broken::Mismatch => format!(
            "journal {path} was changed after tsrotate wrote it: the seal of line {line} does not match (a record was edited, removed or moved)"
        ),
    }
}

impl Error {
    /// Whether this is a journal whose seal does not verify.
    #[must_use]
    pub fn is_unsealed(&self) -> bool {
        matches!(self, Self::Unsealed { .. })
    }
}

/// Whether `id` can name a journal: letters, digits and dashes. `../x` must not name a file
/// elsewhere (red-team finding; the seal would still refuse a foreign file, though not a sealed
/// older copy kept outside the state directory, and no path made from a person's argument
/// should leave the journal folder).
#[must_use]
pub fn is_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether every record of a journal verifies with the key it was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// Every record verifies: tsrotate wrote it, with this key, in this order, under this
    /// name.
    Intact,
    /// A record does not.
    Broken {
        /// The 1-based line of the first record that does not verify.
        line: usize,
        /// How.
        why: Broken,
    },
}

/// How a record's seal fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// It has none.
    Missing,
    /// It has one, and it is not this record's with this key after the record before it.
    Mismatch,
}

/// What one kind of journal records: a rotation's [`Event`]s, or another operation's that
/// needs the same crash safety (a containment's device actions, `crate::contain::act`). The
/// format, durability, seal and torn-line rules are the same for every kind.
pub trait Entry: serde::Serialize + serde::de::DeserializeOwned {
    /// Whether this record is the plan every journal of this kind starts with.
    fn opens(&self) -> bool;
    /// The name of that first record, for messages; it also names the kind of journal in
    /// every seal, so that a journal of one kind never verifies as another.
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
    key: JournalKey,
    id: String,
    /// The seal of the last record, which the next one's seal covers.
    prev: [u8; seal::LEN],
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
    pub fn create(state_dir: &Path, key: &JournalKey, started: Started) -> Result<Self, Error> {
        let id = started.rotation_id.clone();
        Self::create_in(
            &Self::dir(state_dir),
            key,
            &id,
            Event::Started(Box::new(started)),
        )
    }

    /// Open an existing journal for appending, returning it with its records, if its seal
    /// verifies. Only under the lock of the rotation's old key: it may cut off a torn last
    /// line or end an unterminated one.
    pub fn open(
        state_dir: &Path,
        key: &JournalKey,
        rotation_id: &str,
    ) -> Result<(Self, Vec<Record>), Error> {
        let path = Self::path_of(state_dir, rotation_id);
        if !is_id(rotation_id) || !path.exists() {
            return Err(Error::UnknownRotation(rotation_id.to_owned()));
        }
        Self::open_at(&path, key)
    }
}

impl<E: Entry> Journal<E> {
    /// Start journal `<dir>/<id>.jsonl` with its first record (the plan), creating `dir`
    /// private if needed.
    pub fn create_in(dir: &Path, key: &JournalKey, id: &str, first: E) -> Result<Self, Error> {
        crate::fs::create_private_dir_all(dir)?;
        let path = dir.join(format!("{id}.jsonl"));
        let (bytes, sealed) = line_bytes(&path, key, id, &[0; seal::LEN], 0, first)?;
        // The journal appears with its `started` record already in it (written and synced
        // beside it, then hard-linked into place, never over an existing journal): a process
        // killed at any moment never leaves an empty journal that `resume` could not make
        // sense of.
        crate::fs::write_new_private(&path, &bytes)?;
        let file = crate::fs::open_append(&path)?;
        Ok(Self {
            path,
            file,
            next_seq: 1,
            key: key.clone(),
            id: id.to_owned(),
            prev: sealed,
            kind: std::marker::PhantomData,
        })
    }

    /// Open the journal at `path` for appending, returning it with its records, if every
    /// record's seal verifies ([`Error::Unsealed`] otherwise). Only under the lock of what
    /// it concerns: it may cut off a torn last line or end an unterminated one.
    pub fn open_at(path: &Path, key: &JournalKey) -> Result<(Self, Vec<Record<E>>), Error> {
        let (journal, records, seal) = Self::open_to_settle(path, key)?;
        match seal {
            Seal::Intact => Ok((journal, records)),
            Seal::Broken { line, why } => Err(Error::Unsealed {
                path: path.to_owned(),
                line,
                why,
            }),
        }
    }

    /// Open the journal at `path` for appending whatever its [`Seal`]: only to record that a
    /// person settled it (`abandon`), never to act on what it says. What is appended is
    /// sealed; the journal stays unsealed as a whole.
    pub fn open_to_settle(
        path: &Path,
        key: &JournalKey,
    ) -> Result<(Self, Vec<Record<E>>, Seal), Error> {
        let path = path.to_owned();
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let parsed = parse_lines::<E>(&bytes, &path, Some(key))?;
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = crate::fs::open_append(&path)?;
        // Whatever follows must start on a line of its own, or it would be glued to the end
        // and read as damage.
        match parsed.tail {
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
        let next_seq = parsed.records.last().map_or(0, |r| r.seq + 1);
        Ok((
            Self {
                id: journal_id(&path),
                path,
                file,
                next_seq,
                key: key.clone(),
                prev: parsed.last_seal,
                kind: std::marker::PhantomData,
            },
            parsed.records,
            parsed.seal,
        ))
    }

    /// Append one record and make it durable before returning.
    pub fn append(&mut self, event: E) -> Result<(), Error> {
        let (bytes, sealed) = line_bytes(
            &self.path,
            &self.key,
            &self.id,
            &self.prev,
            self.next_seq,
            event,
        )?;
        crate::fs::append_durable(&mut self.file, &self.path, &bytes)?;
        self.next_seq += 1;
        self.prev = sealed;
        Ok(())
    }

    /// Where this journal lives.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A journal's ID: its file's name without `.jsonl`.
fn journal_id(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .map(|n| n.strip_suffix(".jsonl").unwrap_or(&n).to_owned())
        .unwrap_or_default()
}

/// What a sealed line ends with after the record's own bytes (minus its closing brace):
/// `,"mac":"<64 hex>"}`.
const MAC_OPEN: &[u8] = br#","mac":""#;
const MAC_TAIL: usize = MAC_OPEN.len() + 2 * seal::LEN + 2;

/// Record `seq` of journal `id` at `path` (named in errors), sealed after `prev`, as the
/// line written for it, and its seal.
fn line_bytes<E: Entry>(
    path: &Path,
    key: &JournalKey,
    id: &str,
    prev: &[u8; seal::LEN],
    seq: u64,
    event: E,
) -> Result<(Vec<u8>, [u8; seal::LEN]), Error> {
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
    let sealed = key.seal(E::OPENING, id, prev, &bytes);
    // The record's bytes as sealed are the line without its `mac` member: drop the closing
    // brace, add the member, close again.
    bytes.pop();
    bytes.extend_from_slice(MAC_OPEN);
    bytes.extend_from_slice(&seal::to_hex(&sealed));
    bytes.extend_from_slice(b"\"}\n");
    Ok((bytes, sealed))
}

/// A sealed line split into the record's bytes as sealed and the seal; `None` when the line
/// does not end with a seal.
fn split_seal(line: &[u8]) -> Option<(Vec<u8>, [u8; seal::LEN])> {
    let cut = line.len().checked_sub(MAC_TAIL)?;
    let (record, tail) = line.split_at(cut);
    let hex = tail.strip_prefix(MAC_OPEN)?.strip_suffix(b"\"}")?;
    let sealed = seal::from_hex(hex)?;
    let mut bytes = Vec::with_capacity(record.len() + 1);
    bytes.extend_from_slice(record);
    bytes.push(b'}');
    Some((bytes, sealed))
}

/// Read every record of a rotation journal whose seal verifies with `key`.
pub fn read(path: &Path, key: &JournalKey) -> Result<Vec<Record>, Error> {
    read_as(path, key)
}

/// Read every record of a journal of another kind than a rotation's, if its seal verifies.
pub fn read_as<E: Entry>(path: &Path, key: &JournalKey) -> Result<Vec<Record<E>>, Error> {
    match read_any(path, key)? {
        (records, Seal::Intact) => Ok(records),
        (_, Seal::Broken { line, why }) => Err(Error::Unsealed {
            path: path.to_owned(),
            line,
            why,
        }),
    }
}

/// Read every record of a journal whatever its seal, and the seal: for showing a journal,
/// never for acting on it unless the seal is [`Seal::Intact`].
pub fn read_any<E: Entry>(path: &Path, key: &JournalKey) -> Result<(Vec<Record<E>>, Seal), Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&bytes, path, Some(key))
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

/// A journal's bytes, read.
struct Parsed<E> {
    records: Vec<Record<E>>,
    tail: Tail,
    seal: Seal,
    /// The seal of the last record as written (zeros when it has none), which the next
    /// record appended seals over.
    last_seal: [u8; seal::LEN],
}

/// Every record of a journal's bytes and its seal under `key` (without a key, nothing
/// verifies); `path` names it in errors, and its file name is the journal's ID that every
/// seal covers. What [`read_any`] does after reading the file (public for the fuzz target:
/// the journal is read from a state directory, so its bytes are input).
pub fn parse<E: Entry>(
    bytes: &[u8],
    path: &Path,
    key: Option<&JournalKey>,
) -> Result<(Vec<Record<E>>, Seal), Error> {
    parse_lines(bytes, path, key).map(|p| (p.records, p.seal))
}

/// Every record of a journal, how it ends, and its seal. A torn line can only be the last
/// one and without its newline (an append writes the newline last): a bad line anywhere
/// else, including a bad last line that has its newline, is damage.
fn parse_lines<E: Entry>(
    bytes: &[u8],
    path: &Path,
    key: Option<&JournalKey>,
) -> Result<Parsed<E>, Error> {
    let id = journal_id(path);
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
    let mut seal = Seal::Intact;
    let mut prev = [0u8; seal::LEN];
    for (i, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let split = split_seal(line);
        let record: &[u8] = split.as_ref().map_or(line, |(record, _)| record);
        match serde_json::from_slice::<Line<E>>(record) {
            Ok(line) if line.v > FORMAT_VERSION => {
                return Err(Error::NewerVersion {
                    path: path.to_owned(),
                    version: line.v,
                });
            }
            Ok(parsed) => {
                let verdict = match (&split, key) {
                    (None, _) => Some(Broken::Missing),
                    (Some((record, sealed)), Some(key))
                        if key.verifies(E::OPENING, &id, &prev, record, sealed) =>
                    {
                        None
                    }
                    (Some(_), _) => Some(Broken::Mismatch),
                };
                if let (Some(why), Seal::Intact) = (verdict, seal) {
                    seal = Seal::Broken { line: i + 1, why };
                }
                prev = split.as_ref().map_or([0; seal::LEN], |(_, sealed)| *sealed);
                records.push(Record {
                    seq: parsed.seq,
                    at: parsed.at,
                    event: parsed.event,
                });
            }
            Err(_) if i + 1 == count && !ends_whole => {
                tail = Tail::Torn {
                    at: bytes.len() - line.len(),
                };
            }
            Err(e) => {
                // Peek at the version so a newer format is reported as such.
                let version = serde_json::from_slice::<serde_json::Value>(record)
                    .ok()
                    .and_then(|v| v.get("v").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                if version > u64::from(FORMAT_VERSION) {
                    return Err(Error::NewerVersion {
                        path: path.to_owned(),
                        version: u32::try_from(version).unwrap_or(u32::MAX),
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
    Ok(Parsed {
        records,
        tail,
        seal,
        last_seal: prev,
    })
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
    use std::fs::OpenOptions;

    use super::*;
    use crate::key::KeyId;

    fn key() -> JournalKey {
        JournalKey::from_bytes([7; 32])
    }

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

    /// Red-team finding: `resume ../rotations/ID` was accepted, the ID going straight into a
    /// path. An ID names a journal in the journal folder, nothing else.
    #[test]
    fn an_id_never_names_a_file_outside_the_journal_folder() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path(), &key(), started()).unwrap();
        let id = journal
            .path()
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        drop(journal);
        assert!(Journal::open(dir.path(), &key(), &id).is_ok());
        for other in [
            format!("../rotations/{id}"),
            format!("./{id}"),
            String::new(),
        ] {
            let Err(err) = Journal::open(dir.path(), &key(), &other) else {
                panic!("`{other}` opened a journal");
            };
            assert!(matches!(err, Error::UnknownRotation(_)), "{other}: {err}");
        }
    }

    #[test]
    fn records_appended_after_a_torn_line_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), &key(), started()).unwrap();
        let old: KeyId = "kOLD1CNTRL".parse().unwrap();
        journal
            .append(Event::RevokeIntent {
                key_id: old.clone(),
            })
            .unwrap();
        // The process dies halfway through its next append.
        journal.file.write_all(br#"{"v":2,"seq":2,"at":"#).unwrap();
        drop(journal);

        let (mut journal, records) =
            Journal::open(dir.path(), &key(), "r20261128000000torn00").unwrap();
        assert_eq!(records.len(), 2, "the torn line is not a record");
        for _ in 0..2 {
            journal
                .append(Event::Revoked {
                    key_id: old.clone(),
                    already: false,
                })
                .unwrap();
        }
        let records = read(journal.path(), &key()).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert!(matches!(records[3].event, Event::Revoked { .. }));
    }

    #[test]
    fn a_whole_record_missing_its_newline_is_kept_and_a_bad_terminated_line_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), &key(), started()).unwrap();
        journal.append(Event::RollbackStarted).unwrap();
        let path = journal.path().to_owned();
        drop(journal);
        // The second record without its newline (a short write that stopped exactly there).
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let (mut journal, records) =
            Journal::open(dir.path(), &key(), "r20261128000000torn00").unwrap();
        assert_eq!(records.len(), 2, "the unterminated record counts");
        journal.append(Event::RollbackStarted).unwrap();
        assert_eq!(
            read(&path, &key()).unwrap().len(),
            3,
            "and nothing was glued to it"
        );

        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"v\":2,\"seq\":3,\"at\":\n").unwrap();
        assert!(matches!(
            read(&path, &key()),
            Err(Error::Damaged { line: 4, .. })
        ));
    }

    /// A journal of three records, sealed with `key()`; its path and lines.
    fn sealed_journal(dir: &Path) -> (PathBuf, Vec<String>) {
        let mut journal = Journal::create(dir, &key(), started()).unwrap();
        let old: KeyId = "kOLD1CNTRL".parse().unwrap();
        journal
            .append(Event::RevokeIntent {
                key_id: old.clone(),
            })
            .unwrap();
        journal
            .append(Event::Revoked {
                key_id: old,
                already: false,
            })
            .unwrap();
        let path = journal.path().to_owned();
        let lines = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        (path, lines)
    }

    fn seal_of(path: &Path, lines: &[String]) -> Seal {
        let text = lines.join("\n") + "\n";
        parse::<Event>(text.as_bytes(), path, Some(&key()))
            .unwrap()
            .1
    }

    #[test]
    fn a_seal_catches_edits_reordering_splicing_renaming_and_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lines) = sealed_journal(dir.path());
        assert_eq!(seal_of(&path, &lines), Seal::Intact);
        assert_eq!(read(&path, &key()).unwrap().len(), 3);
        assert!(
            !std::fs::read_to_string(&path)
                .unwrap()
                .contains(&"07".repeat(32))
        );

        let mismatch = |line| Seal::Broken {
            line,
            why: Broken::Mismatch,
        };
        // An edited record.
        let mut edited = lines.clone();
        edited[1] = edited[1].replace("kOLD1CNTRL", "kOTHERCNTRL");
        assert_eq!(seal_of(&path, &edited), mismatch(2));
        // Records in another order.
        let mut reordered = lines.clone();
        reordered.swap(1, 2);
        assert_eq!(seal_of(&path, &reordered), mismatch(2));
        // A record taken out of the middle.
        let removed = vec![lines[0].clone(), lines[2].clone()];
        assert_eq!(seal_of(&path, &removed), mismatch(2));
        // The same journal under another rotation's name.
        assert_eq!(
            seal_of(
                &dir.path().join("rotations/r20261128000000other.jsonl"),
                &lines
            ),
            mismatch(1)
        );
        // A record of another journal with the same ID and key spliced in: the chain differs.
        let other_dir = tempfile::tempdir().unwrap();
        let (_, other) = sealed_journal(other_dir.path());
        let mut spliced = lines.clone();
        spliced[2].clone_from(&other[2]);
        assert_eq!(seal_of(&path, &spliced), mismatch(3));
        let mut spliced = lines.clone();
        spliced.push(lines[2].clone());
        assert_eq!(seal_of(&path, &spliced), mismatch(4), "a record replayed");
        // Another key.
        let other_key = JournalKey::from_bytes([8; 32]);
        let text = lines.join("\n") + "\n";
        let (records, seal) = parse::<Event>(text.as_bytes(), &path, Some(&other_key)).unwrap();
        assert_eq!(records.len(), 3, "still shown");
        assert_eq!(seal, mismatch(1));
        // A journal of tsrotate 1, without seals.
        let unsealed: Vec<String> = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let mut v = v.as_object().unwrap().clone();
                v.remove("mac");
                v.insert("v".into(), 1.into());
                serde_json::to_string(&v).unwrap()
            })
            .collect();
        assert_eq!(
            seal_of(&path, &unsealed),
            Seal::Broken {
                line: 1,
                why: Broken::Missing
            }
        );
        // Refused for acting, in words.
        #[allow(clippy::disallowed_methods, reason = "a test fixture")]
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        let error = read(&path, &key()).unwrap_err();
        assert!(error.is_unsealed());
        assert!(
            error
                .to_string()
                .contains("changed after tsrotate wrote it"),
            "{error}"
        );
        assert!(Journal::open(dir.path(), &key(), "r20261128000000torn00").is_err());
        // Settling it appends a sealed record; the journal stays unsealed.
        let (mut journal, records, seal) = Journal::<Event>::open_to_settle(&path, &key()).unwrap();
        assert_eq!((records.len(), seal), (3, mismatch(2)));
        journal.append(Event::Abandoned { by: "t".into() }).unwrap();
        let (records, seal) = read_any::<Event>(&path, &key()).unwrap();
        assert_eq!((records.len(), seal), (4, mismatch(2)));
    }

    /// What a seal cannot tell: a journal cut after a record reads as a crash there.
    #[test]
    fn a_journal_cut_at_a_record_still_verifies_and_a_torn_seal_is_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lines) = sealed_journal(dir.path());
        assert_eq!(seal_of(&path, &lines[..2]), Seal::Intact);
        let torn = format!(
            "{}\n{}\n{}",
            lines[0],
            lines[1],
            &lines[2][..lines[2].len() - 5]
        );
        let (records, seal) = parse::<Event>(torn.as_bytes(), &path, Some(&key())).unwrap();
        assert_eq!((records.len(), seal), (2, Seal::Intact));
    }
}
