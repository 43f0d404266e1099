//! A place edited by key ID: a text file that holds the credential among other text. Files
//! found with `rotate --in`, and configured `type = "file"` places whose file holds more than
//! the credential, are this kind of place.
//!
//! The credential is found by its key ID and replaced where it stands ([`super::file`] finds
//! and replaces); every other byte stays. Where the new key is an OAuth client, its ID also
//! replaces the old client's ID wherever that stands on its own (consumers such as the
//! Kubernetes operator, the GitHub action or Terraform take the ID apart from the secret).
//!
//! # Security
//!
//! The place is reached by the canonical path the plan resolved, and the journal records
//! that path. Every run that touches the place (the rotation, `resume`, `rollback`, a
//! scheduled rotation) reads and writes it by walking that path one folder at a time without
//! following any link ([`fs::Route::Resolved`]): a folder on the way swapped for a link since
//! the plan, or the file itself swapped for a link, is refused and never read or written
//! through (issue 11 item 3). A configured place whose configured path went through a link
//! at the plan must still resolve to the same file, or it is refused as redirected since the
//! rotation began ([`fs::Error::Repointed`]).
//!
//! Values leave this module only as [`Secret`]s; errors name the file, never a value.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

use super::Error;
use super::file::{self, FileMatch};
use crate::fs::{self, ContentHash, Route};
use crate::key::{Credential, KeyId, KeyKind, Secret};

/// The largest file whose bare client IDs are replaced. Larger files still have their
/// credentials replaced (that streams), but not their bare IDs.
const READ_WHOLE_LIMIT: u64 = 16 * 1024 * 1024;

/// A file's bytes (zeroed on drop) and the identity of the file they were read from.
type Whole = (Zeroizing<Vec<u8>>, fs::FileId);

/// The largest file [`KeyedFile::value_of`] reads whole.
const READ_VALUE_LIMIT: u64 = 64 * 1024 * 1024;

/// A text file in which credentials are found and replaced by key ID.
pub struct KeyedFile {
    /// The canonical path the plan resolved: read and written without following any link.
    path: PathBuf,
    /// How people know the place: the path as found under `--in`, or `file <configured>`.
    display: String,
    /// For a configured place: the path as configured, which must still resolve to `path`.
    configured: Option<PathBuf>,
    /// What the file looked like when the plan was shown, used by the first write only: a
    /// file changed since is not overwritten. Later writes (after a restart) search again.
    planned: Mutex<Option<FileMatch>>,
}

impl KeyedFile {
    /// A file the plan found under `--in` in this process, as it was found.
    #[must_use]
    pub fn found(planned: FileMatch) -> Self {
        Self {
            path: planned.path.clone(),
            display: planned.display_path.display().to_string(),
            configured: None,
            planned: Mutex::new(Some(planned)),
        }
    }

    /// A file found under `--in` by an earlier run: `path` is the canonical path its journal
    /// records.
    #[must_use]
    pub fn planned(path: PathBuf, display: String) -> Self {
        Self {
            path,
            display,
            configured: None,
            planned: Mutex::new(None),
        }
    }

    /// A configured `type = "file"` place. `resolved` is the canonical path its plan
    /// recorded ([`fs::resolve_folder`]); a journal from before paths were recorded has
    /// none, and the path is resolved now.
    pub fn configured(configured: &Path, resolved: Option<&Path>) -> Result<Self, Error> {
        let display = format!("file {}", configured.display());
        let path = match resolved {
            Some(path) => path.to_owned(),
            None => {
                fs::resolve_folder(configured).map_err(|e| Error::other(&display, e.to_string()))?
            }
        };
        Ok(Self {
            path,
            display,
            configured: Some(configured.to_owned()),
            planned: Mutex::new(None),
        })
    }

    /// How people know the place.
    #[must_use]
    pub fn describe(&self) -> &str {
        &self.display
    }

    fn err(&self, e: &impl std::fmt::Display) -> Error {
        Error::other(&self.display, e.to_string())
    }

    fn fs_err(&self, e: &fs::Error) -> Error {
        Error::of_fs(&self.display, e)
    }

    fn file_err(&self, e: &file::Error) -> Error {
        match e {
            file::Error::Fs(e) => self.fs_err(e),
            e => self.err(e),
        }
    }

    /// A configured place's path must still resolve to the file the plan resolved.
    fn check_pin(&self) -> Result<(), Error> {
        let Some(configured) = &self.configured else {
            return Ok(());
        };
        if *configured == self.path {
            return Ok(());
        }
        match fs::resolve_folder(configured) {
            Ok(now) if now == self.path => Ok(()),
            // A folder that is gone is the walk's to report.
            Err(e) if e.is_not_found() => Ok(()),
            _ => Err(self.fs_err(&fs::Error::Repointed {
                path: configured.clone(),
            })),
        }
    }

    /// The route to the file: its canonical path, walked without following any link.
    fn route() -> Route {
        Route::Resolved { file: None }
    }

    /// The file's bytes (zeroed on drop) and identity, read without following any link;
    /// `None` when it is larger than `limit`.
    fn read_whole(&self, limit: u64) -> Result<Option<Whole>, fs::Error> {
        let mut file = fs::open_regular_via(&self.path, Self::route())?;
        let io = |source| fs::Error::Io {
            action: fs::Action::Read,
            path: self.path.clone(),
            source,
        };
        let meta = file.metadata().map_err(io)?;
        if meta.len() > limit {
            return Ok(None);
        }
        let mut bytes =
            Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
        file.by_ref()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > limit {
            return Ok(None);
        }
        Ok(Some((bytes, fs::FileId::of(&meta))))
    }

    /// Whether the file holds a credential of `ids` among other text (rather than being the
    /// value, which a [`super::structured::FieldSink`] of the whole file edits).
    #[must_use]
    pub fn holds_key_inside(&self, ids: &[KeyId]) -> bool {
        if self.check_pin().is_err() {
            // Refused by the write that follows, with the reason.
            return true;
        }
        let holds = file::holds_via(&self.path, Self::route(), ids).is_ok_and(|o| !o.is_empty());
        let whole = self
            .read_whole(READ_WHOLE_LIMIT)
            .ok()
            .flatten()
            .is_some_and(|(b, _)| {
                std::str::from_utf8(&b)
                    .is_ok_and(|t| Credential::parse(t.trim_end_matches(['\n', '\r'])).is_ok())
            });
        holds && !whole
    }

    /// Whether the file holds a credential of `ids` now, as a rollback asks before putting
    /// the old value back. A file (or folder) that is not there holds none. One that can no
    /// longer be reached without following a link is [`super::ErrorKind::Redirected`].
    pub fn holds_any(&self, ids: &[KeyId]) -> Result<bool, Error> {
        self.check_pin()?;
        match file::holds_via(&self.path, Self::route(), ids) {
            Ok(found) => Ok(!found.is_empty()),
            Err(file::Error::Fs(e)) if e.is_not_found() => Ok(false),
            Err(e) => Err(self.file_err(&e)),
        }
    }

    /// The value of key `id` as it stands in the file, if the file holds it. `rollback`
    /// and recovery take the old value (or a minted one) back from a place, so that tsrotate
    /// never stores a secret itself.
    pub fn value_of(&self, id: &KeyId) -> Result<Option<Secret>, Error> {
        self.check_pin()?;
        let bytes = match self.read_whole(READ_VALUE_LIMIT) {
            Ok(Some((bytes, _))) => bytes,
            Ok(None) => return Ok(None),
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(self.fs_err(&e)),
        };
        Ok(value_in(&bytes, id))
    }

    /// Replace every credential of `replace` in the file with `value` (and, for an OAuth
    /// client, the old clients' bare IDs with its ID), then read the file back: it must hold
    /// the new value and no other credential of the rotation.
    pub fn write(&self, replace: &[KeyId], value: &Secret) -> Result<(), Error> {
        self.check_pin()?;
        let planned = self.planned.lock().expect("plan lock").take();
        // After a restart (or a second write), the file as it is now is the baseline: it can
        // only differ from the plan by credentials this rotation wrote.
        let target = if let Some(m) = planned {
            m
        } else {
            let found = file::search_file(&self.path, Path::new(&self.display), replace)
                .map_err(|e| self.file_err(&e))?;
            match found {
                Some(m) => m,
                // Nothing of ours left to replace: the read-back decides whether that is fine.
                None => return self.read_back(replace, value),
            }
        };
        file::replace(&target, replace, value).map_err(|e| self.file_err(&e))?;
        let client = Credential::parse(value.expose_secret())
            .ok()
            .filter(|c| c.kind() == &KeyKind::OAuthClientSecret);
        if let Some(c) = client {
            self.replace_bare_ids(replace, c.key_id())
                .map_err(|e| self.fs_err(&e))?;
        }
        self.read_back(replace, value)
    }

    /// Replace every occurrence of one of `ids` that stands on its own (not inside a longer
    /// alphanumeric run) with `new_id`.
    fn replace_bare_ids(&self, ids: &[KeyId], new_id: &KeyId) -> Result<(), fs::Error> {
        let Some((bytes, file_id)) = self.read_whole(READ_WHOLE_LIMIT)? else {
            return Ok(());
        };
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
            let route = Route::Resolved {
                file: Some(file_id),
            };
            fs::atomic_write_via(&self.path, route, &ContentHash::of(&bytes), &out)?;
        }
        Ok(())
    }

    /// The file must hold the new value, and no other credential of the rotation.
    fn read_back(&self, replace: &[KeyId], value: &Secret) -> Result<(), Error> {
        let mut ids: Vec<KeyId> = replace.to_vec();
        if let Ok(c) = Credential::parse(value.expose_secret()) {
            ids.push(c.key_id().clone());
        }
        let occurrences = file::holds_via(&self.path, Self::route(), &ids)
            .map_err(|e| self.err(&format_args!("reading back: {e}")))?;
        if occurrences.is_empty() {
            return Err(self.err(&"no longer holds the credential (was it edited meanwhile?)"));
        }
        let fingerprint = value.fingerprint();
        if let Some(stale) = occurrences.iter().find(|o| o.fingerprint != fingerprint) {
            return Err(self.err(&format_args!(
                "still holds key {} after writing",
                stale.key_id
            )));
        }
        Ok(())
    }
}

/// The value of key `id` in `bytes`, if they hold it.
fn value_in(bytes: &[u8], id: &KeyId) -> Option<Secret> {
    let needle = format!("-{id}-");
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&bytes[from..], crate::key::PREFIX.as_bytes()) {
        let start = from + at;
        if let Some(len) = crate::key::credential_len_at(&bytes[start..]) {
            let candidate = &bytes[start..start + len];
            if memchr::memmem::find(candidate, needle.as_bytes()).is_some()
                && let Ok(value) = std::str::from_utf8(candidate)
                && Credential::parse(value).is_ok_and(|c| c.key_id() == id)
            {
                return Some(Secret::new(value.to_owned()));
            }
        }
        from = start + crate::key::PREFIX.len();
    }
    None
}
