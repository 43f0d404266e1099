//! Admission: who may begin or continue a rotation, and where it is recorded.
//!
//! Every front end (the CLI's `rotate`, `rotate --due`, `resume`, `rollback`, `abandon`) goes
//! through here, so each rule lives once:
//!
//! 1. **The state directory is trusted only if no one else can change it** ([`StateDir`]):
//!    owned by the user running tsrotate and writable by no one else, and so are the
//!    folders and files in it. Journals say which places to write and which keys to revoke;
//!    one written by someone else would steer a rotation. And since anything running as the
//!    same user (or whatever restores the folder from a cache) can still put files there,
//!    **a journal is acted on only if its seal verifies** with the journal key the
//!    [`StateDir`] is opened with ([`crate::journal::seal`]).
//! 2. **One rotation of a key at a time**: a per-key lock for as long as a [`Session`] (or an
//!    [`Admission`]) lives; and one scheduled run per managed credential
//!    ([`CredentialLock`]).
//! 3. **No second rotation beside an unfinished one** of the same key (replacing it, or
//!    having minted it), and **none beside a damaged journal** that may record one.
//! 4. **A journal never chooses a command** ([`Authority`]): continuing a rotation runs only
//!    what the current configuration says (each configured place with its `after` and
//!    `verify`, each credential's `verify`) and the `--verify-cmd` given again on the command
//!    line (matched by digest, since the journal keeps no command).
//! 5. **Every record goes to the journal** (durable, authoritative) **and then to the audit
//!    log** ([`Session`] is the engine's [`Recorder`]).

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use crate::audit::AuditLog;
use crate::config::Config;
use crate::fs::{Fail, FileLock};
use crate::journal::{self, Event, Journal, JournalKey, SinkPlan, Started};
use crate::key::KeyId;

use super::engine::Recorder;
use super::state::State;

/// Why a rotation may not begin or continue. Each says what to do in [`Error::hint`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory, or something in it, could be changed by someone else.
    #[error("`{}` {problem}; tsrotate trusts what it finds there, so it stops", path.display())]
    Untrusted {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong with it.
        problem: Untrusted,
    },
    /// The system refused to let this user read or write the state directory (a folder
    /// without write permission, a read-only file system, a parent folder that refuses a new
    /// folder): the person can fix that or choose another, so it is not a failure of tsrotate.
    #[error("cannot use the state directory `{}`: {source}", dir.display())]
    Unusable {
        /// The state directory.
        dir: PathBuf,
        /// What was refused, naming the file or folder and with the system's reason (a
        /// [`crate::fs::Error`] or a [`journal::Error`]).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another run holds the key's lock.
    #[error("another tsrotate run is working on key {key_id}")]
    Busy {
        /// The key.
        key_id: KeyId,
        /// What the lock said.
        #[source]
        source: crate::fs::Error,
    },
    /// A rotation of the key is not finished.
    #[error("{}", unfinished_message(key_id, rotation_id, old))]
    Unfinished {
        /// The key asked for.
        key_id: KeyId,
        /// The unfinished rotation.
        rotation_id: String,
        /// The key it replaces (the key asked for, or the one whose rotation minted it).
        old: KeyId,
    },
    /// A journal that may record an unfinished rotation of the key cannot be read.
    #[error("the journal of rotation {rotation_id}{} cannot be read ({error})", about.as_ref().map(|a| format!(" of {a}")).unwrap_or_default())]
    Damaged {
        /// The rotation.
        rotation_id: String,
        /// What it concerns (`key k…`, `credential web`), when known.
        about: Option<String>,
        /// What is wrong with it.
        error: String,
    },
    /// Continuing would run something the journal names and this run does not vouch for.
    #[error("rotation {rotation_id} {what}")]
    NotAuthorized {
        /// The rotation.
        rotation_id: String,
        /// What, in words.
        what: String,
        /// What to do.
        hint: String,
    },
    /// A journal that may record an unfinished rotation of the key is not sealed with this
    /// journal key: what it says is not believed, and nothing else of its key is begun
    /// until a person settles it.
    #[error(
        "{error}; tsrotate does nothing from it, and no new rotation of {about} begins beside it"
    )]
    Unsealed {
        /// The rotation.
        rotation_id: String,
        /// What it concerns (`key k…`, `credential web`).
        about: String,
        /// How its seal fails, in words.
        error: String,
    },
    /// A journal holds no records.
    #[error("the journal of rotation {0} is empty")]
    Empty(String),
    /// The state directory could not be prepared.
    #[error(transparent)]
    Fs(#[from] crate::fs::Error),
    /// A journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] journal::Error),
}

fn unfinished_message(key_id: &KeyId, rotation_id: &str, old: &KeyId) -> String {
    if old == key_id {
        format!("rotation {rotation_id} of key {key_id} is not finished")
    } else {
        format!("rotation {rotation_id} of key {old}, which minted {key_id}, is not finished")
    }
}

/// What to do about a journal whose seal does not verify.
#[must_use]
pub fn unsealed_hint(rotation_id: &str) -> String {
    format!(
        "check by hand which of its keys are live and which places hold them (`tsrotate inspect KEY_ID`), then settle it with `tsrotate abandon {rotation_id}`; if it is yours and was sealed with another journal key, run with that key (TSROTATE_JOURNAL_KEY_FILE)"
    )
}

impl Error {
    /// What the person can do about it.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Untrusted { path, problem } => Some(problem.hint(path)),
            Self::Unusable { dir, .. } => Some(format!(
                "make `{}` (or the folder it is to be made in) readable and writable by you, or use another with --state-dir or TSROTATE_STATE_DIR",
                dir.display()
            )),
            Self::Busy { .. } => Some(
                "wait for it to finish; if none is running, the lock is released automatically"
                    .to_owned(),
            ),
            Self::Unfinished { rotation_id: id, .. } => Some(format!(
                "finish it with `tsrotate resume {id}` or undo it with `tsrotate rollback {id}`; if it can be neither, `tsrotate abandon {id}`"
            )),
            Self::Damaged { .. } => Some(
                "the rotation may be unfinished: repair the journal, or move it out of the state directory once you know its keys are in order".to_owned(),
            ),
            Self::NotAuthorized { hint, .. } => Some(hint.clone()),
            Self::Unsealed { rotation_id, .. } => Some(unsealed_hint(rotation_id)),
            Self::Journal(journal::Error::Unsealed { path, .. }) => Some(unsealed_hint(
                &path
                    .file_stem()
                    .map_or_else(|| "ID".into(), |s| s.to_string_lossy()),
            )),
            Self::Empty(_) | Self::Fs(_) | Self::Journal(_) => None,
        }
    }

    /// Whether the person must fix something before trying again (as opposed to the system
    /// failing): the CLI exits 2 for these.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Untrusted { .. }
            | Self::Unusable { .. }
            | Self::Busy { .. }
            | Self::Unfinished { .. }
            | Self::Damaged { .. }
            | Self::NotAuthorized { .. }
            | Self::Unsealed { .. }
            | Self::Journal(journal::Error::UnknownRotation(_) | journal::Error::Unsealed { .. }) => {
                true
            }
            Self::Empty(_) | Self::Fs(_) | Self::Journal(_) => false,
        }
    }
}

/// What makes a state directory, or an entry in it, untrustworthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// Owned by another user.
    Owner {
        /// Its owner.
        uid: u32,
        /// The user running tsrotate.
        me: u32,
    },
    /// Writable by its group or by everyone.
    Writable {
        /// Its permission bits.
        mode: u32,
    },
    /// Not a folder (or not a regular file) where one belongs.
    Kind {
        /// What it is instead.
        found: &'static str,
    },
    /// A folder holding a symbolic link on the way (the state directory or the configuration
    /// named by a link) that someone else can change, so they could point the link elsewhere.
    LinkFolder {
        /// The link.
        link: PathBuf,
        /// The folder's owner.
        uid: u32,
        /// The folder's permission bits.
        mode: u32,
    },
    /// A folder above the state directory that someone else can change: they could move the
    /// state directory away and put one of their own in its place between two uses, since
    /// its files are opened by path at each use.
    Above {
        /// The folder (or the state directory) right under it.
        child: PathBuf,
        /// The folder's owner.
        uid: u32,
        /// The folder's permission bits.
        mode: u32,
    },
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Owner { uid, me } => {
                write!(
                    f,
                    "is owned by uid {uid}, not by the user running tsrotate (uid {me})"
                )
            }
            Self::Writable { mode } => write!(
                f,
                "is writable by {} (mode {:o})",
                if mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                mode & 0o7777
            ),
            Self::Kind { found } => write!(f, "is {found}"),
            Self::LinkFolder { link, uid, mode } => write!(
                f,
                "holds the symbolic link `{}` and can be changed by others (owner uid {uid}, mode {:o}), who could point the link elsewhere",
                link.display(),
                mode & 0o7777
            ),
            Self::Above { child, uid, mode } => write!(
                f,
                "holds `{}` and can be changed by others (owner uid {uid}, mode {:o}), who could put another state directory in its place",
                child.display(),
                mode & 0o7777
            ),
        }
    }
}

impl Untrusted {
    fn hint(&self, path: &Path) -> String {
        let shown = path.display();
        match self {
            Self::Owner { me, .. } => format!(
                "use one of your own (for the state directory: --state-dir or TSROTATE_STATE_DIR), or, once you have checked what is in it, `chown -R {me} {shown}`"
            ),
            Self::Writable { .. } => format!(
                "check what is in it, then `chmod go-w {shown}` (tsrotate creates its folders 0700 and its files 0600); keep state out of shared caches"
            ),
            Self::Kind { .. } => {
                "give a folder with --state-dir or TSROTATE_STATE_DIR, or move this away".to_owned()
            }
            Self::LinkFolder { link, .. } => format!(
                "name the link's target itself (not `{}`), or keep the link in a folder that only you (or root) can change",
                link.display()
            ),
            // A sticky folder (/tmp) is fine for what is ours in it: the trouble is that what
            // it holds on the way is someone else's, and no chmod of the folder fixes that.
            Self::Above { child, mode, .. } if mode & 0o1000 != 0 => format!(
                "`{}` is not yours or root's, so its owner can replace it: give a state directory on a path of your own with --state-dir or TSROTATE_STATE_DIR",
                child.display()
            ),
            Self::Above { .. } => format!(
                "keep the state directory where only you (or root) can change every folder above it (`chmod go-w {shown}`, or a sticky folder such as /tmp), or give another with --state-dir or TSROTATE_STATE_DIR"
            ),
        }
    }
}

/// Whether the system refused an operation for a reason the person can fix (permissions, a
/// read-only file system, a path that is not a folder or leads nowhere), as opposed to the
/// system failing.
fn refused(error: &crate::fs::Error) -> bool {
    match error {
        crate::fs::Error::Io { source, .. }
        | crate::fs::Error::FolderNotWritable { source, .. } => refused_io(source),
        _ => false,
    }
}

/// [`refused`], for a system error.
fn refused_io(source: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        source.kind(),
        K::PermissionDenied
            | K::ReadOnlyFilesystem
            | K::NotADirectory
            | K::NotFound
            | K::StorageFull
            | K::QuotaExceeded
    )
}

/// An error of a file operation in state directory `dir`: [`Error::Unusable`] when the
/// system [`refused`] it.
fn in_state_dir(dir: &Path) -> impl FnOnce(crate::fs::Error) -> Error + '_ {
    move |source| {
        if refused(&source) {
            Error::Unusable {
                dir: dir.to_owned(),
                source: Box::new(source),
            }
        } else {
            Error::Fs(source)
        }
    }
}

/// A journal error in state directory `dir`: [`Error::Unusable`] when the system refused
/// to create or open it.
fn journal_in_state_dir(dir: &Path) -> impl FnOnce(journal::Error) -> Error + '_ {
    move |error| match error {
        journal::Error::File(source) => in_state_dir(dir)(source),
        journal::Error::Io { ref source, .. } if refused_io(source) => Error::Unusable {
            dir: dir.to_owned(),
            source: Box::new(error),
        },
        other => Error::Journal(other),
    }
}

/// The effective user ID of this process.
fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A state directory that only the user running tsrotate can change.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
    key: JournalKey,
}

impl StateDir {
    /// Check a state directory: it, its `rotations`, `containments` and `locks` folders and
    /// every file in them, and the audit log, must be owned by this user and writable by no one
    /// else. A directory that does not exist yet is fine: tsrotate creates it private. Its
    /// journals are sealed and verified with `key`, which must be kept outside it.
    ///
    /// Each check is made on what was opened, not on a path looked up again: the directory is
    /// opened once (a symbolic link to it is followed, and the folder holding the link must be
    /// one that no one else can change), judged with `fstat`, and what is in it is looked at
    /// relative to that handle without following any link.
    pub fn open(path: &Path, key: JournalKey) -> Result<Self, Error> {
        Self::check(path)?;
        Ok(Self {
            path: path.to_owned(),
            key,
        })
    }

    /// [`StateDir::open`]'s checks alone, for what uses the state directory without its
    /// journals (the audit log of `revoke`).
    pub fn check(path: &Path) -> Result<(), Error> {
        let me = me();
        let Some(top) = open_top_dir(path, me)? else {
            return Ok(());
        };
        for folder in [
            Journal::dir(path),
            crate::contain::act::dir(path),
            path.join("locks"),
        ] {
            let Some(sub) = open_child(path, &top, &folder, Entry::Folder, me)? else {
                continue;
            };
            let listing =
                rustix::fs::Dir::read_from(&sub).map_err(|e| unusable(path, &folder, e))?;
            for entry in listing {
                let entry = entry.map_err(|e| unusable(path, &folder, e))?;
                let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
                if name == "." || name == ".." {
                    continue;
                }
                open_child(path, &sub, &folder.join(name), Entry::File, me)?;
            }
        }
        open_child(path, &top, &AuditLog::path_in(path), Entry::File, me)?;
        Ok(())
    }

    /// The key its journals are sealed with.
    #[must_use]
    pub fn key(&self) -> &JournalKey {
        &self.key
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its journals.
    #[must_use]
    pub fn journals(&self) -> journal::Index {
        journal::Index::new(&self.path, &self.key)
    }
}

#[derive(Clone, Copy)]
enum Entry {
    Folder,
    File,
}

/// A system error on `path` inside state directory `state`, as [`in_state_dir`] says it.
fn unusable(state: &Path, path: &Path, error: rustix::io::Errno) -> Error {
    in_state_dir(state)(crate::fs::Error::Io {
        action: crate::fs::Action::Read,
        path: path.to_owned(),
        source: error.into(),
    })
}

/// Whether the owner and mode of what was opened (`fstat`) make it trustworthy: owned by
/// `me` (or by root, where `root` says so), writable by no one else.
fn judge(path: &Path, stat: &rustix::fs::Stat, me: u32, root: bool) -> Result<(), Error> {
    let untrusted = |problem| Error::Untrusted {
        path: path.to_owned(),
        problem,
    };
    let uid = stat.st_uid;
    if uid != me && !(root && uid == 0) {
        return Err(untrusted(Untrusted::Owner { uid, me }));
    }
    let mode = stat.st_mode;
    if mode & 0o022 != 0 {
        return Err(untrusted(Untrusted::Writable { mode }));
    }
    Ok(())
}

/// Follow the symbolic links at `path` (the last component, link after link) and check that
/// each is in a folder no one else can change: owned by `me` or root, and writable by no
/// one else unless it is sticky (like `/tmp`) and the link is `me`'s or root's, which the
/// sticky bit keeps others from replacing. A link in any other folder could be pointed
/// elsewhere between any check and any use. `io` says a system error on a path.
fn check_links(
    path: &Path,
    me: u32,
    io: &dyn Fn(&Path, rustix::io::Errno) -> Error,
) -> Result<(), Error> {
    let mut current = path.to_owned();
    // As many as the system follows (`MAXSYMLINKS`); past that, opening fails with ELOOP.
    for _ in 0..40 {
        let link = match rustix::fs::lstat(&current) {
            Ok(link) => link,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io(&current, e)),
        };
        if rustix::fs::FileType::from_raw_mode(link.st_mode) != rustix::fs::FileType::Symlink {
            return Ok(());
        }
        let folder = match current.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let held = rustix::fs::stat(&folder).map_err(|e| io(&folder, e))?;
        let trusted = |uid: u32| uid == me || uid == 0;
        let sticky = held.st_mode & 0o1000 != 0;
        let others_write = held.st_mode & 0o022 != 0;
        if !trusted(held.st_uid) || (others_write && !(sticky && trusted(link.st_uid))) {
            return Err(Error::Untrusted {
                path: folder,
                problem: Untrusted::LinkFolder {
                    link: current,
                    uid: held.st_uid,
                    mode: held.st_mode,
                },
            });
        }
        let target = rustix::fs::readlink(&current, Vec::new()).map_err(|e| io(&current, e))?;
        current = folder.join(std::ffi::OsStr::from_bytes(target.as_bytes()));
    }
    Ok(())
}

/// Open the state directory itself (every folder on the way to it, links followed, checked by
/// [`check_route`]) and judge the opened folder; `None` when it does not exist yet.
fn open_top_dir(path: &Path, me: u32) -> Result<Option<std::os::fd::OwnedFd>, Error> {
    let io = |at: &Path, e| unusable(path, at, e);
    check_route(path, me, &io)?;
    let dir = match rustix::fs::open(path, dir_flags(), rustix::fs::Mode::empty()) {
        Ok(dir) => dir,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::NOTDIR) => {
            return Err(Error::Untrusted {
                path: path.to_owned(),
                problem: Untrusted::Kind {
                    found: "not a folder",
                },
            });
        }
        Err(e) => return Err(io(path, e)),
    };
    let stat = rustix::fs::fstat(&dir).map_err(|e| io(path, e))?;
    judge(path, &stat, me, false)?;
    Ok(Some(dir))
}

/// Check every folder on the way to `path`, as the system walks it each time the path is
/// used: component by component from the root, following each symbolic link where it is
/// met (in the middle of the path too). Each folder must be owned by `me` or root and
/// writable by no one else, unless it is sticky (like `/tmp`) and what it holds on the way
/// is `me`'s or root's, which the sticky bit keeps others from renaming. The state
/// directory's files are opened by path at each use, so a folder on the way that someone else
/// can change would let them swap the whole directory, or point a link on the way elsewhere,
/// after it was judged (as OpenSSH's `StrictModes` checks the folders above
/// `authorized_keys`). Where the path stops existing, the folder that would hold the rest is
/// judged as holding something of `me`'s. `io` says a system error on a path.
fn check_route(
    path: &Path,
    me: u32,
    io: &dyn Fn(&Path, rustix::io::Errno) -> Error,
) -> Result<(), Error> {
    use std::collections::VecDeque;
    use std::path::Component;
    /// One step of the walk.
    enum Part {
        Root,
        Up,
        Name(std::ffi::OsString),
    }
    /// The components of `path` still to walk, in order.
    fn parts(path: &Path) -> VecDeque<Part> {
        path.components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(Part::Name(name.to_owned())),
                Component::ParentDir => Some(Part::Up),
                Component::RootDir | Component::Prefix(_) => Some(Part::Root),
                Component::CurDir => None,
            })
            .collect()
    }
    let trusted = |uid: u32| uid == me || uid == 0;
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        let cwd = std::env::current_dir().map_err(|e| {
            io(
                path,
                rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
            )
        })?;
        cwd.join(path)
    };
    let mut rest = parts(&absolute);
    let mut current = PathBuf::from("/");
    let mut links = 0;
    while let Some(next) = rest.pop_front() {
        let name = match next {
            Part::Name(name) => name,
            Part::Up => {
                current.pop();
                continue;
            }
            Part::Root => {
                current = PathBuf::from("/");
                continue;
            }
        };
        let child = current.join(name);
        let (child_owner, link) = match rustix::fs::lstat(&child) {
            Ok(stat) => (
                stat.st_uid,
                rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Symlink,
            ),
            Err(rustix::io::Errno::NOENT) => (me, false),
            Err(e) => return Err(io(&child, e)),
        };
        // The end of the path is judged for itself once opened (its owner, with the `chown`
        // that fixes it); on the way to it, who owns what a sticky folder holds matters.
        let child_owner = if rest.is_empty() && !link {
            me
        } else {
            child_owner
        };
        let held = rustix::fs::stat(&current).map_err(|e| io(&current, e))?;
        let sticky = held.st_mode & 0o1000 != 0;
        let others_write = held.st_mode & 0o022 != 0;
        if !trusted(held.st_uid) || (others_write && !(sticky && trusted(child_owner))) {
            let problem = if link {
                Untrusted::LinkFolder {
                    link: child,
                    uid: held.st_uid,
                    mode: held.st_mode,
                }
            } else {
                Untrusted::Above {
                    child,
                    uid: held.st_uid,
                    mode: held.st_mode,
                }
            };
            return Err(Error::Untrusted {
                path: current,
                problem,
            });
        }
        if !child.exists() && !link {
            return Ok(());
        }
        if link {
            links += 1;
            // As many as the system follows (`MAXSYMLINKS`); past that, opening fails with
            // ELOOP and says so.
            if links > 40 {
                return Ok(());
            }
            let target = rustix::fs::readlink(&child, Vec::new()).map_err(|e| io(&child, e))?;
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
            for part in parts(&target).into_iter().rev() {
                rest.push_front(part);
            }
        } else {
            current = child;
        }
    }
    Ok(())
}

/// Flags for opening a folder to look in.
fn dir_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// One entry of the state directory (`path`, named relative to the open folder `at`):
/// absent, or of the right kind (never a symbolic link: it is not followed), owned by `me`,
/// writable by no one else. A folder is returned open, for what is in it to be checked
/// relative to it.
fn open_child(
    state: &Path,
    at: &std::os::fd::OwnedFd,
    path: &Path,
    kind: Entry,
    me: u32,
) -> Result<Option<std::os::fd::OwnedFd>, Error> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let untrusted = |found| Error::Untrusted {
        path: path.to_owned(),
        problem: Untrusted::Kind { found },
    };
    let name = path.file_name().unwrap_or_default();
    let stat = match rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(unusable(state, path, e)),
    };
    let file_type = FileType::from_raw_mode(stat.st_mode);
    match (kind, file_type) {
        (_, FileType::Symlink) => return Err(untrusted("a symbolic link")),
        (Entry::Folder, FileType::Directory) | (Entry::File, FileType::RegularFile) => {}
        (Entry::Folder, _) => return Err(untrusted("not a folder")),
        (Entry::File, _) => return Err(untrusted("not a regular file")),
    }
    match kind {
        Entry::File => {
            judge(path, &stat, me, false)?;
            Ok(None)
        }
        Entry::Folder => {
            // Opened without following a link, then judged on the handle: what is listed
            // next is in the folder that was judged.
            let dir = rustix::fs::openat(at, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|e| unusable(state, path, e))?;
            let stat = rustix::fs::fstat(&dir).map_err(|e| unusable(state, path, e))?;
            judge(path, &stat, me, false)?;
            Ok(Some(dir))
        }
    }
}

/// Read a configuration file: it names programs that run and servers that receive tokens,
/// so it must be owned by the user running tsrotate (or by root) and writable by no one
/// else. The file is opened once and the checks are made on the opened handle (`fstat`),
/// and what is read is what was checked. Symbolic links are followed (a Kubernetes
/// `ConfigMap` mount is one), each only if the folder holding it is one no one else can
/// change (owned by this user or root, and not writable by others unless sticky).
pub fn read_configuration(path: &Path) -> Result<String, Error> {
    use rustix::fs::{FileType, Mode, OFlags};
    use std::io::Read as _;
    let io = |at: &Path, e: rustix::io::Errno| {
        Error::Fs(crate::fs::Error::Io {
            action: crate::fs::Action::Read,
            path: at.to_owned(),
            source: e.into(),
        })
    };
    let me = me();
    check_links(path, me, &io)?;
    // Non-blocking, so that a FIFO put there does not hang the run; a regular file reads
    // the same either way.
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(path, e))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| io(path, e))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(Error::Untrusted {
            path: path.to_owned(),
            problem: Untrusted::Kind {
                found: "not a regular file",
            },
        });
    }
    judge(path, &stat, me, true)?;
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut bytes)
        .map_err(|source| {
            Error::Fs(crate::fs::Error::Io {
                action: crate::fs::Action::Read,
                path: path.to_owned(),
                source,
            })
        })?;
    String::from_utf8(bytes).map_err(|_| {
        Error::Fs(crate::fs::Error::Io {
            action: crate::fs::Action::Read,
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"),
        })
    })
}

/// What this run vouches for when it continues a rotation from its journal.
#[derive(Debug, Clone, Copy)]
pub struct Authority<'a> {
    /// The configuration as it is now (`None` when there is none).
    pub config: Option<&'a Config>,
    /// `--verify-cmd` as given on this run's command line.
    pub verify_cmd: Option<&'a str>,
    /// What the run will do.
    pub purpose: Purpose,
}

/// Why a journal is reopened, which decides what it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `resume`: writes places (their `after` too) and runs every verification.
    Finish,
    /// `rotate --due`: as [`Purpose::Finish`], but unattended, so only with configured
    /// places: files that a journal names (from a `--in` search) are not written. Nobody is
    /// there to see where the key goes, and the state directory may be restored from
    /// somewhere else (a red-team finding).
    FinishScheduled,
    /// `rollback`: writes places (their `after` too), verifies nothing.
    Undo,
    /// `abandon`: runs nothing.
    Settle,
}

impl Authority<'_> {
    /// `abandon`: runs nothing, so vouches for nothing.
    pub const SETTLE: Authority<'static> = Authority {
        config: None,
        verify_cmd: None,
        purpose: Purpose::Settle,
    };

    /// Whether this run may carry out `started` (with `sinks`, the places known now).
    fn allows(&self, started: &Started, sinks: &[SinkPlan]) -> Result<(), Error> {
        if self.purpose == Purpose::Settle {
            return Ok(());
        }
        let refuse = |what: String, hint: String| Error::NotAuthorized {
            rotation_id: started.rotation_id.clone(),
            what,
            hint,
        };
        files_inside_roots(started, sinks)?;
        for sink in sinks {
            let SinkPlan::Configured {
                spec,
                credential,
                after,
                verify,
                ..
            } = sink
            else {
                if self.purpose == Purpose::FinishScheduled {
                    return Err(refuse(
                        format!(
                            "writes {}, which the configuration does not name; an unattended run writes only configured places",
                            sink.describe()
                        ),
                        format!(
                            "look at the journal, then finish it yourself with `tsrotate resume {}`, or settle it with `tsrotate abandon`",
                            started.rotation_id
                        ),
                    ));
                }
                continue;
            };
            let configured = self.config.is_some_and(|config| {
                config
                    .credentials
                    .iter()
                    .filter(|c| credential.as_ref().is_none_or(|name| *name == c.name))
                    .flat_map(|c| &c.sinks)
                    .any(|s| s.spec == *spec && s.after == *after && s.verify == *verify)
            });
            if !configured {
                return Err(refuse(
                    format!(
                        "writes {}{}, which the configuration does not name (so configured)",
                        crate::sink::describe(spec),
                        credential
                            .as_ref()
                            .map(|c| format!(" of credential `{c}`"))
                            .unwrap_or_default()
                    ),
                    "a journal never decides where a key goes or what runs: give the configuration the rotation started with (--config), or settle it with `tsrotate abandon`".to_owned(),
                ));
            }
        }
        if self.purpose == Purpose::Undo {
            return Ok(());
        }
        for check in &started.credential_verify {
            let same = self
                .config
                .and_then(|c| c.credential(&check.credential))
                .is_some_and(|c| c.verify == check.run);
            if !same {
                return Err(refuse(
                    format!(
                        "verifies with the `verify` of credential `{}` as it was configured, and the configuration no longer says the same",
                        check.credential
                    ),
                    "give the configuration the rotation started with (--config), or undo it with `tsrotate rollback`".to_owned(),
                ));
            }
        }
        if let Some(digest) = &started.verify_cmd {
            match self.verify_cmd {
                Some(line) if digest.matches(line) => {}
                Some(_) => {
                    return Err(refuse(
                        format!("was started with another --verify-cmd ({digest})"),
                        "give exactly the --verify-cmd it was started with; a journal keeps only its digest".to_owned(),
                    ));
                }
                None => {
                    return Err(refuse(
                        "was started with --verify-cmd, which a journal does not keep".to_owned(),
                        format!(
                            "give the same command again: `tsrotate resume {} --verify-cmd '…'`",
                            started.rotation_id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A key locked and cleared for a new rotation; [`Admission::begin`] journals its plan.
#[derive(Debug)]
pub struct Admission {
    dir: StateDir,
    lock: Option<FileLock>,
}

/// Whether an [`Admission`] takes the key's lock (a dry run only checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Hold the key's lock until the session ends.
    Take,
    /// Check only; nothing will be changed.
    CheckOnly,
}

/// The lock on a managed credential's name, held while a scheduled run (`rotate --due`)
/// decides again whether it is due and rotates it: a second runner finds it taken and
/// skips the credential.
#[derive(Debug)]
pub struct CredentialLock {
    _lock: FileLock,
}

impl CredentialLock {
    /// Take the lock of credential `name`, or `Ok(None)` when another run holds it.
    pub fn try_take(dir: &StateDir, name: &str) -> Result<Option<Self>, Error> {
        let locks = dir.path.join("locks");
        crate::fs::create_private_dir_all(&locks).map_err(in_state_dir(&dir.path))?;
        match FileLock::acquire(
            &locks.join(format!("credential-{name}.lock")),
            Fail::Immediately,
        ) {
            Ok(lock) => Ok(Some(Self { _lock: lock })),
            Err(crate::fs::Error::Busy { .. }) => Ok(None),
            Err(e) => Err(in_state_dir(&dir.path)(e)),
        }
    }
}

/// Take the per-key lock of `key_id`.
fn lock_key(dir: &StateDir, key_id: &KeyId) -> Result<FileLock, Error> {
    let locks = dir.path.join("locks");
    crate::fs::create_private_dir_all(&locks).map_err(in_state_dir(&dir.path))?;
    FileLock::acquire(&locks.join(format!("{key_id}.lock")), Fail::Immediately).map_err(|source| {
        match source {
            crate::fs::Error::Busy { .. } => Error::Busy {
                key_id: key_id.clone(),
                source,
            },
            other => in_state_dir(&dir.path)(other),
        }
    })
}

impl Admission {
    /// Lock `key_id` (unless `lock` says not to), then check that no unfinished rotation
    /// concerns it and that no damaged journal may; `credential`, when the rotation is of a
    /// managed credential, must have no damaged journal either.
    pub fn check(
        dir: &StateDir,
        key_id: &KeyId,
        credential: Option<&str>,
        lock: Lock,
    ) -> Result<Self, Error> {
        let held = match lock {
            Lock::Take => Some(lock_key(dir, key_id)?),
            Lock::CheckOnly => None,
        };
        let journals = dir.journals();
        if let Some((rotation_id, old)) = unfinished_for(&journals, key_id)?.into_iter().next() {
            return Err(Error::Unfinished {
                key_id: key_id.clone(),
                rotation_id,
                old,
            });
        }
        if let Some(damaged) = journals.damaged_for(credential, Some(key_id)).first() {
            let about = match (&damaged.credential, &damaged.old_key) {
                (Some(c), _) if Some(c.as_str()) == credential => Some(format!("credential `{c}`")),
                (_, Some(k)) => Some(format!("key {k}")),
                (Some(c), None) => Some(format!("credential `{c}`")),
                (None, None) => None,
            };
            if damaged.unsealed {
                return Err(Error::Unsealed {
                    rotation_id: damaged.rotation_id.clone(),
                    about: about.unwrap_or_else(|| format!("key {key_id}")),
                    error: damaged.error.clone(),
                });
            }
            return Err(Error::Damaged {
                rotation_id: damaged.rotation_id.clone(),
                about,
                error: damaged.error.clone(),
            });
        }
        Ok(Self {
            dir: dir.clone(),
            lock: held,
        })
    }

    /// Journal the plan and start recording. `user` is who runs it (for the audit log).
    pub fn begin(self, started: Started) -> Result<Session, Error> {
        let Some(lock) = self.lock else {
            unreachable!("a check-only admission never begins a rotation");
        };
        let rotation_id = started.rotation_id.clone();
        let user = started.user.clone();
        let journal = Journal::create(&self.dir.path, &self.dir.key, started.clone())
            .map_err(journal_in_state_dir(&self.dir.path))?;
        let records = journal::read(journal.path(), &self.dir.key)?;
        let state = State::replay(&records).ok_or_else(|| Error::Empty(rotation_id.clone()))?;
        let mut session = Session::recording(&self.dir, lock, journal, &user, state, true);
        session.created = true;
        session.audit_only(&Event::Started(Box::new(started)));
        Ok(session)
    }
}

/// The unfinished rotations that replace `key_id` or minted it, each with the key it
/// replaces. Either way, another rotation of `key_id` would race it.
pub fn unfinished_for(
    journals: &journal::Index,
    key_id: &KeyId,
) -> Result<Vec<(String, KeyId)>, journal::Error> {
    Ok(journals
        .of_key(key_id)?
        .into_iter()
        .filter_map(|(id, records)| {
            let state = State::replay(&records)?;
            (!state.is_finished()
                && (state.old_key_id() == key_id || state.minted.contains(key_id)))
            .then(|| (id, state.old_key_id().clone()))
        })
        .collect())
}

/// A rotation in progress under its key's lock: its state as journaled, and the recorder
/// the engine writes through (the journal first, then the audit log).
pub struct Session {
    _lock: FileLock,
    dir: PathBuf,
    journal: Journal,
    audit: Option<AuditLog>,
    user: String,
    rotation_id: String,
    state: State,
    sealed: bool,
    /// Whether this process created the journal (then no older copy can stand in for it).
    created: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("rotation_id", &self.rotation_id)
            .field("journal", &self.journal.path())
            .finish_non_exhaustive()
    }
}

impl Session {
    fn recording(
        dir: &StateDir,
        lock: FileLock,
        journal: Journal,
        user: &str,
        state: State,
        sealed: bool,
    ) -> Self {
        // The journal is what recovery relies on; an audit log that cannot be opened is
        // reported and the rotation goes on.
        let audit = match AuditLog::open(&dir.path) {
            Ok(log) => Some(log),
            Err(e) => {
                tracing::warn!("cannot open the audit log in {}: {e}", dir.path.display());
                None
            }
        };
        Self {
            _lock: lock,
            dir: dir.path.clone(),
            journal,
            audit,
            user: user.to_owned(),
            rotation_id: state.rotation_id().to_owned(),
            state,
            sealed,
            created: false,
        }
    }

    /// Reopen rotation `rotation_id` under its key's lock, if `authority` vouches for what it
    /// would run. The journal is read once to learn the key, then again once the lock is
    /// held: a run that held the lock may have just finished the rotation.
    pub fn reopen(
        dir: &StateDir,
        rotation_id: &str,
        user: &str,
        authority: &Authority<'_>,
    ) -> Result<Self, Error> {
        let path = Journal::path_of(&dir.path, rotation_id);
        // An ID, never a path (`resume ../../backup/rotations/ID` opened a sealed copy kept
        // outside the state directory).
        if !journal::is_id(rotation_id) || !path.exists() {
            return Err(journal::Error::UnknownRotation(rotation_id.to_owned()).into());
        }
        let empty = || Error::Empty(rotation_id.to_owned());
        // Only settling (`abandon`) opens a journal whose seal does not verify: it runs
        // nothing and believes nothing the journal says but its keys' IDs, to look them up.
        let settle = authority.purpose == Purpose::Settle;
        let read = |path: &Path| {
            if settle {
                journal::read_any(path, &dir.key).map(|(records, _)| records)
            } else {
                journal::read(path, &dir.key)
            }
        };
        let before = State::replay(&read(&path)?).ok_or_else(empty)?;
        let lock = lock_key(dir, before.old_key_id())?;
        let (journal, records, seal) = if settle {
            Journal::open_to_settle(&path, &dir.key).map_err(journal_in_state_dir(&dir.path))?
        } else {
            let (journal, records) =
                Journal::open_at(&path, &dir.key).map_err(journal_in_state_dir(&dir.path))?;
            (journal, records, journal::Seal::Intact)
        };
        let state = State::replay(&records).ok_or_else(empty)?;
        if !state.is_finished() {
            authority.allows(&state.started, &state.sinks)?;
        }
        let sealed = seal == journal::Seal::Intact;
        Ok(Self::recording(dir, lock, journal, user, state, sealed))
    }

    /// Whether this process created the journal (a fresh rotation), rather than reopened
    /// one: a reopened journal may be an older copy, and is checked against the API before
    /// it may lead to a mint ([`super::Executor::created_here`]).
    #[must_use]
    pub fn created_here(&self) -> bool {
        self.created
    }

    /// Whether its journal's seal verifies (always, except when opened to settle it).
    #[must_use]
    pub fn sealed(&self) -> bool {
        self.sealed
    }

    /// The rotation as journaled.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Record `event` and apply it to [`Self::state`] (for events the front end adds, such
    /// as places `resume` found).
    pub fn add(&mut self, event: &Event) -> Result<(), journal::Error> {
        self.record(event.clone())?;
        self.state.apply(event);
        Ok(())
    }

    /// The state directory it is recorded in.
    #[must_use]
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// The journal's path.
    #[must_use]
    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// Log an event that is already in the journal (the plan, written at creation).
    fn audit_only(&mut self, event: &Event) {
        if let Some(audit) = &mut self.audit
            && let Err(e) = audit.append(&self.user, Some(&self.rotation_id), event)
        {
            tracing::warn!("cannot write the audit log {}: {e}", audit.path().display());
        }
    }
}

impl Recorder for Session {
    fn record(&mut self, event: Event) -> Result<(), journal::Error> {
        self.journal.append(event.clone())?;
        self.audit_only(&event);
        Ok(())
    }
}

/// Every file place lies under a root as the plan resolved it. A file found with `--in`
/// always does (a link is followed only to a target inside a root), so a journal naming
/// another file does not decide where a key goes. Journals from before roots were recorded
/// resolved are not checked.
fn files_inside_roots(started: &Started, sinks: &[SinkPlan]) -> Result<(), Error> {
    if started.resolved_roots.is_empty() {
        return Ok(());
    }
    let outside = sinks.iter().find_map(|sink| match sink {
        SinkPlan::File { path, .. }
            if !started
                .resolved_roots
                .iter()
                .any(|root| path.starts_with(root)) =>
        {
            Some(path)
        }
        _ => None,
    });
    match outside {
        None => Ok(()),
        Some(path) => Err(Error::NotAuthorized {
            rotation_id: started.rotation_id.clone(),
            what: format!(
                "writes {}, which is outside the folders the rotation searched",
                crate::text::path(path)
            ),
            hint: format!(
                "a journal never decides where a key goes: look at the journal, then settle it with `tsrotate abandon {}`",
                started.rotation_id
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    #![allow(
        clippy::disallowed_methods,
        reason = "tests make the configuration files they read"
    )]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::journal::{AuthKeyTemplate, CommandDigest, CredentialVerify, OldKey, Template};
    use crate::sink::SinkSpec;

    const CONFIG: &str = "[[credential]]\nname = \"web\"\nkind = \"auth-key\"\nverify = [\"check\"]\n[[credential.sink]]\ntype = \"command\"\nrun = [\"push\"]\nafter = [\"reload\"]\n";

    fn started(
        sinks: Vec<SinkPlan>,
        verify_cmd: Option<&str>,
        checks: Vec<CredentialVerify>,
    ) -> Started {
        Started {
            rotation_id: "r1".into(),
            tailnet: "-".into(),
            user: "t".into(),
            credential: Some("web".into()),
            old: OldKey {
                key_id: "kOLD1CNTRL".parse().unwrap(),
                kind: "auth-key".into(),
                fingerprint: None,
                metadata: None,
            },
            template: Template::AuthKey(AuthKeyTemplate {
                reusable: false,
                ephemeral: false,
                preauthorized: false,
                tags: Vec::new(),
                expiry_seconds: None,
                description: None,
            }),
            roots: Vec::new(),
            resolved_roots: Vec::new(),
            sinks,
            revoke_first: false,
            verify_cmd: verify_cmd.map(CommandDigest::of),
            credential_verify: checks,
            not_updated: Vec::new(),
        }
    }

    fn place(run: &str, after: &str) -> SinkPlan {
        SinkPlan::Configured {
            spec: SinkSpec::Command {
                run: vec![run.into()],
            },
            credential: Some("web".into()),
            after: vec![after.into()],
            verify: Vec::new(),
            held_at_plan: None,
            resolved: None,
        }
    }

    /// The library's rule, for any front end: a journal runs only what the configuration
    /// and the command line say now.
    #[test]
    fn a_journal_runs_only_what_the_configuration_and_command_line_vouch_for() {
        let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let check = |run: &str| CredentialVerify {
            credential: "web".into(),
            run: vec![run.into()],
        };
        let finish = |verify_cmd| Authority {
            config: Some(&config),
            verify_cmd,
            purpose: Purpose::Finish,
        };
        let ok = started(
            vec![place("push", "reload")],
            Some("true"),
            vec![check("check")],
        );
        assert!(finish(Some("true")).allows(&ok, &ok.sinks).is_ok());
        // Each way a journal could choose a command is refused.
        let cases = [
            (started(vec![place("evil", "reload")], None, vec![]), None),
            (started(vec![place("push", "evil")], None, vec![]), None),
            (started(vec![], None, vec![check("evil")]), None),
            (started(vec![], Some("true"), vec![]), None),
            (started(vec![], Some("true"), vec![]), Some("evil")),
        ];
        for (journal, given) in &cases {
            let refused = finish(*given).allows(journal, &journal.sinks);
            assert!(
                matches!(refused, Err(Error::NotAuthorized { .. })),
                "{journal:?}"
            );
        }
        // Without a configuration, no configured place is vouched for.
        let none = Authority {
            config: None,
            verify_cmd: None,
            purpose: Purpose::Undo,
        };
        assert!(none.allows(&ok, &ok.sinks).is_err());
        // Undoing runs no verification; settling runs nothing.
        let undo = Authority {
            purpose: Purpose::Undo,
            ..finish(None)
        };
        assert!(undo.allows(&ok, &ok.sinks).is_ok());
        assert!(
            Authority::SETTLE
                .allows(&cases[0].0, &cases[0].0.sinks)
                .is_ok()
        );
    }

    /// A file place of a journal must lie under one of the roots its plan resolved: a
    /// journal that names another file is refused, whatever the purpose but settling.
    #[test]
    fn a_journal_file_place_outside_the_resolved_roots_is_refused() {
        let file = |path: &str| SinkPlan::File {
            path: path.into(),
            display: path.into(),
        };
        let mut journal = started(vec![file("/srv/app/.env")], None, vec![]);
        journal.roots = vec!["app".into()];
        journal.resolved_roots = vec!["/srv/app".into()];
        let finish = Authority {
            config: None,
            verify_cmd: None,
            purpose: Purpose::Finish,
        };
        assert!(finish.allows(&journal, &journal.sinks).is_ok());
        journal.sinks.push(file("/etc/shadow"));
        for purpose in [Purpose::Finish, Purpose::Undo] {
            let refused = Authority { purpose, ..finish }.allows(&journal, &journal.sinks);
            assert!(
                matches!(&refused, Err(Error::NotAuthorized { what, .. }) if what.contains("/etc/shadow")),
                "{refused:?}"
            );
        }
        assert!(Authority::SETTLE.allows(&journal, &journal.sinks).is_ok());
        // A journal from before roots were recorded resolved is read as before.
        journal.resolved_roots.clear();
        assert!(finish.allows(&journal, &journal.sinks).is_ok());
    }

    #[test]
    fn a_state_directory_is_trusted_only_if_no_one_else_can_change_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(
            StateDir::open(&state, JournalKey::from_bytes([7; 32])).is_ok(),
            "absent: created private later"
        );
        std::fs::create_dir_all(state.join("rotations")).unwrap();
        assert!(StateDir::open(&state, JournalKey::from_bytes([7; 32])).is_ok());
        for (path, mode) in [(state.clone(), 0o770), (state.join("rotations"), 0o757)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = StateDir::open(&state, JournalKey::from_bytes([7; 32])).unwrap_err();
            assert!(
                matches!(
                    &error,
                    Error::Untrusted {
                        problem: Untrusted::Writable { .. },
                        ..
                    }
                ),
                "{error}"
            );
            assert!(error.is_user_error() && error.hint().unwrap().contains("chmod"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let journal = state.join("rotations/r1.jsonl");
        std::os::unix::fs::symlink("/etc/passwd", &journal).unwrap();
        assert!(matches!(
            StateDir::open(&state, JournalKey::from_bytes([7; 32])),
            Err(Error::Untrusted {
                problem: Untrusted::Kind { .. },
                ..
            })
        ));
    }

    fn mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn is_link_folder(result: &Result<impl std::fmt::Debug, Error>) -> bool {
        matches!(
            result,
            Err(Error::Untrusted {
                problem: Untrusted::LinkFolder { .. },
                ..
            })
        )
    }

    /// Issue 11 (TOCTOU): only the state directory itself may be a link. A folder inside it
    /// that is a link (to a private folder of the same user, which the old check judged by
    /// its target) is refused: what is checked must be what is used, and a link is followed
    /// anew at every use.
    #[test]
    fn a_link_inside_the_state_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, state.join("rotations")).unwrap();
        let error = StateDir::open(&state, JournalKey::from_bytes([7; 32])).unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Untrusted {
                    problem: Untrusted::Kind {
                        found: "a symbolic link"
                    },
                    ..
                }
            ),
            "{error}"
        );
    }

    /// Issue 11 (TOCTOU): where a link is allowed (the state directory, the configuration),
    /// it is followed only from a folder that no one else can change; else whoever can write
    /// that folder could point the link elsewhere between the check and the use. A sticky
    /// folder (`/tmp`) keeps others from replacing a link that is ours.
    #[test]
    fn a_link_to_the_state_directory_or_configuration_is_followed_only_from_a_safe_folder() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        mode(&state, 0o700);
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "# empty\n").unwrap();
        mode(&config, 0o600);
        let links = dir.path().join("links");
        std::fs::create_dir(&links).unwrap();
        let state_link = links.join("state");
        let config_link = links.join("config.toml");
        std::os::unix::fs::symlink(&state, &state_link).unwrap();
        std::os::unix::fs::symlink(&config, &config_link).unwrap();

        mode(&links, 0o755);
        assert!(StateDir::open(&state_link, JournalKey::from_bytes([7; 32])).is_ok());
        assert_eq!(read_configuration(&config_link).unwrap(), "# empty\n");

        mode(&links, 0o777);
        assert!(is_link_folder(&StateDir::open(
            &state_link,
            JournalKey::from_bytes([7; 32])
        )));
        let refused = read_configuration(&config_link);
        assert!(is_link_folder(&refused));
        let error = refused.unwrap_err();
        assert!(error.is_user_error() && error.to_string().contains("symbolic link"));
        // Not the link's target: it is in order.
        assert!(StateDir::open(&state, JournalKey::from_bytes([7; 32])).is_ok());
        assert!(read_configuration(&config).is_ok());

        // Sticky, like /tmp: others may not replace our link there.
        mode(&links, 0o1777);
        assert!(StateDir::open(&state_link, JournalKey::from_bytes([7; 32])).is_ok());
        assert!(read_configuration(&config_link).is_ok());
        mode(&links, 0o755);
    }

    /// A folder above the state directory that others can change lets them swap the whole
    /// directory after it was judged (its files are opened by path at each use): refused,
    /// unless it is sticky (like /tmp) and the folder under it is ours.
    #[test]
    fn a_folder_above_the_state_directory_that_others_can_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        let state = shared.join("team").join("state");
        std::fs::create_dir_all(&state).unwrap();
        mode(&state, 0o700);
        mode(&shared.join("team"), 0o755);
        let key = || JournalKey::from_bytes([7; 32]);

        mode(&shared, 0o755);
        assert!(StateDir::open(&state, key()).is_ok());

        for open in [0o777, 0o775] {
            mode(&shared, open);
            let error = StateDir::open(&state, key()).unwrap_err();
            assert!(
                matches!(
                    &error,
                    Error::Untrusted { path, problem: Untrusted::Above { child, .. } }
                        if *path == std::fs::canonicalize(&shared).unwrap()
                            && child.ends_with("shared/team")
                ),
                "{error}"
            );
            assert!(error.is_user_error(), "{error}");
            assert!(
                error.to_string().contains("another state directory"),
                "{error}"
            );
        }
        // Reached through a link from a safe folder, the folders above the target count.
        let link = dir.path().join("state-link");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        assert!(StateDir::open(&link, key()).is_err());

        // Sticky, like /tmp: others cannot rename what is ours in it.
        mode(&shared, 0o1777);
        assert!(StateDir::open(&state, key()).is_ok());
        assert!(StateDir::open(&link, key()).is_ok());
        mode(&shared, 0o755);

        // Red team 4: a link in the middle of the path, in a folder others can change. The
        // path is walked as the system walks it at each use, so that link could be pointed
        // elsewhere: refused, though every folder above the target is safe.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::os::unix::fs::symlink(shared.join("team"), open.join("team")).unwrap();
        let via = open.join("team").join("state");
        mode(&open, 0o777);
        assert!(is_link_folder(&StateDir::open(&via, key())));
        mode(&open, 0o755);
        assert!(StateDir::open(&via, key()).is_ok());
        // A state directory yet to be made, in a folder others can change.
        mode(&open, 0o777);
        let unborn = StateDir::open(&open.join("new-state"), key()).unwrap_err();
        assert!(
            matches!(
                &unborn,
                Error::Untrusted {
                    problem: Untrusted::Above { .. },
                    ..
                }
            ),
            "{unborn}"
        );
        mode(&open, 0o755);
    }

    /// Issue 11 (TOCTOU): the configuration's checks are made on the handle that is then
    /// read. A FIFO in its place (owned by the user, mode 0600, so the path's checks passed)
    /// hung the read forever; the opened handle is not a regular file, so it is refused at
    /// once.
    #[test]
    fn the_configuration_is_checked_as_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.toml");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || tx.send(read_configuration(&path).is_err()));
        // A bound on a hang, not a wait for something to happen: the answer comes at once.
        let refused = rx.recv_timeout(std::time::Duration::from_secs(20));
        if refused.is_err() {
            // Release the blocked reader so the test process can end.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        }
        assert_eq!(refused, Ok(true), "a FIFO must be refused, not read");
        // And what is read is the file that was judged.
        let config = dir.path().join("real.toml");
        std::fs::write(&config, "a = 1\n").unwrap();
        mode(&config, 0o644);
        assert_eq!(read_configuration(&config).unwrap(), "a = 1\n");
        mode(&config, 0o666);
        assert!(matches!(
            read_configuration(&config),
            Err(Error::Untrusted {
                problem: Untrusted::Writable { .. },
                ..
            })
        ));
    }
}
