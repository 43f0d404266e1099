//! Safe writes: the only place in tsrotate that writes files.
//!
//! A consumer's file holds a live credential next to configuration that someone else owns.
//! Rewriting it must never lose a byte, a permission bit or its owner, must never leave it
//! half-written, and must never overwrite a change made since we read it. [`rewrite`] does
//! all of that while streaming, so a large file is never held in memory:
//!
//! 1. take `<file>.lock` with `O_EXCL` (git's and gix-lock's convention), so two writers
//!    never interleave;
//! 2. stream the file through a transform into a temporary file in the same directory (a
//!    rename is only atomic within one file system);
//! 3. refuse with [`Error::Changed`] when what was read does not hash to what the caller
//!    planned with, or when length, mtime or inode moved while we read;
//! 4. give the temporary file the original owner and mode, fsync it, rename it over the
//!    target, fsync the directory so the rename itself survives a crash.
//!
//! Any failure removes the temporary and lock files and leaves the target as it was.
//!
//! The journal's and the audit log's helpers live here too, and both use them
//! ([`create_private_dir_all`], [`write_new_private`], [`open_append`],
//! [`open_append_private`], [`append_durable`]), and [`FileLock`], the advisory lock that keeps
//! two runs from rotating the same key at once.
//!
//! `clippy.toml` bans `std::fs::write` and `std::fs::rename` everywhere; this module is
//! where they are allowed, each use with its reason.
//!
//! # Security
//!
//! Errors carry paths, owners and modes, never file contents. [`ContentHash`] is a SHA-256 of
//! a whole file: the secrets in such files are high-entropy, so the hash reveals nothing
//! usable, and it lets the journal prove which version of a file a plan was made against.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Size of the buffers used to stream files.
const STREAM_BUFFER: usize = 64 * 1024;

/// What the first bytes of a lock file taken by [`rewrite`] say, so that a leftover lock can
/// be told apart from an unrelated file that happens to be called `<name>.lock` (a
/// `Gemfile.lock` next to a `Gemfile`).
const LOCK_MARKER: &[u8] = b"tsrotate rewrite lock\n";

/// An error from a file operation. Every variant names the path; none carries file contents.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed. The system's reason is part of the message as well as the
    /// `source`: these errors are often carried as text into a rotation's report, and
    /// "could not create lock file" without "Permission denied" tells nobody what to fix.
    #[error("could not {action} `{}`: {source}", path.display())]
    Io {
        /// What we were doing.
        action: Action,
        /// The file or directory it was done to.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not the one the caller planned with: its content hash differs, or it was
    /// modified while we read it. Nothing was written.
    #[error("`{}` changed since it was read; nothing was written", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// A `<file>.lock` from [`rewrite`] exists: another run is writing the file, or one died
    /// while writing it.
    #[error(
        "lock file `{}` exists: another tsrotate run is writing `{}`, or one was interrupted; \
         if no run is active, remove `{}` and retry",
        lock.display(), path.display(), lock.display()
    )]
    Locked {
        /// The file we meant to write.
        path: PathBuf,
        /// The lock file in the way.
        lock: PathBuf,
    },
    /// `<file>.lock` exists and is not a tsrotate lock file, so it cannot be used to lock
    /// the file (and must not be removed).
    #[error(
        "cannot lock `{}`: `{}` exists and is not a tsrotate lock file",
        path.display(), lock.display()
    )]
    LockPathTaken {
        /// The file we meant to write.
        path: PathBuf,
        /// The unrelated file in the way.
        lock: PathBuf,
    },
    /// An advisory [`FileLock`] is held by another process (or another handle in this one).
    #[error("`{}` is locked by another tsrotate run", path.display())]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// The file's owner could not be kept: only root may give a file to another user.
    #[error(
        "cannot keep the owner of `{}` (uid {uid}, gid {gid}: {source}): run tsrotate as that \
         user or as root",
        path.display()
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
        /// What the system said.
        source: io::Error,
    },
    /// Only regular files are rewritten: a symlink would be replaced by a copy of its target,
    /// and a FIFO or device cannot be rewritten at all.
    #[error("`{}` is not a regular file ({kind})", path.display())]
    NotARegularFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// A folder on the way to a file whose path was resolved when the rotation was planned
    /// is now a symbolic link, or gone: the path no longer leads to the planned file.
    #[error(
        "a folder on the way to `{}` was replaced (by a symbolic link, or removed) since the plan; nothing was written there",
        path.display()
    )]
    Redirected {
        /// The file.
        path: PathBuf,
    },
    /// A folder on the way to a file whose path was resolved when the rotation was planned
    /// is gone: the place no longer exists where the plan found it.
    #[error(
        "a folder on the way to `{}` was removed since the plan; nothing was written there",
        path.display()
    )]
    FolderGone {
        /// The file.
        path: PathBuf,
    },
    /// A configured path that went through a link when the rotation was planned resolves to
    /// another file now: the link was changed since, so the place is not the one planned.
    #[error(
        "`{}` leads to another file than when the rotation began (a link on the way was redirected since the rotation began); nothing was written there",
        path.display()
    )]
    Repointed {
        /// The path as configured.
        path: PathBuf,
    },
    /// The folder a file is to be written in does not exist, or is not a folder. tsrotate
    /// does not create folders: a missing one usually means a wrong path.
    #[error(
        "folder `{}` does not exist, so `{}` cannot be written (tsrotate does not create folders)",
        folder.display(), path.display()
    )]
    MissingFolder {
        /// The file.
        path: PathBuf,
        /// The folder it should be in.
        folder: PathBuf,
    },
    /// New files cannot be made in the file's folder: every write makes its lock and
    /// temporary files there, and renames over the file.
    #[error(
        "cannot create files in folder `{}`, which writing `{}` needs",
        folder.display(), path.display()
    )]
    FolderNotWritable {
        /// The file.
        path: PathBuf,
        /// Its folder.
        folder: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// [`write_new_private`] found the path taken.
    #[error("`{}` already exists", path.display())]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },
    /// The caller's transform failed while streaming the file; the target is untouched.
    #[error("could not rewrite `{}`: {source}", path.display())]
    Transform {
        /// The file.
        path: PathBuf,
        /// What the transform returned.
        source: io::Error,
    },
}

impl Error {
    /// Whether the file (or a folder on the way to it) does not exist: a place that holds
    /// nothing, for a caller that only asks what a place holds.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            Self::FolderGone { .. } | Self::MissingFolder { .. } => true,
            _ => false,
        }
    }
}

/// What a failed system call was doing, for [`Error::Io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reading or opening for reading.
    Read,
    /// Creating a lock file.
    CreateLock,
    /// Creating a temporary file.
    CreateTemp,
    /// Writing.
    Write,
    /// Setting permissions.
    SetPermissions,
    /// fsync.
    Sync,
    /// Renaming the temporary file over the target.
    Replace,
    /// Creating a directory.
    CreateDir,
    /// Opening a file for appending.
    OpenForAppend,
    /// Taking an advisory lock.
    Lock,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::CreateLock => "create lock file",
            Self::CreateTemp => "create a temporary file beside",
            Self::Write => "write",
            Self::SetPermissions => "set the permissions of",
            Self::Sync => "sync",
            Self::Replace => "replace",
            Self::CreateDir => "create directory",
            Self::OpenForAppend => "open for appending",
            Self::Lock => "lock",
        })
    }
}

fn io_err(action: Action, path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The SHA-256 of a file's bytes, shown and serialized as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// The hash of `bytes`.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// Why a string is not a [`ContentHash`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a content hash is 64 hex digits")]
pub struct ParseContentHashError;

impl FromStr for ContentHash {
    type Err = ParseContentHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 || !s.is_ascii() {
            return Err(ParseContentHashError);
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| ParseContentHashError)?;
        }
        Ok(Self(out))
    }
}

impl serde::Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A reader that hashes and counts what passes through it.
///
/// The file sink hashes a file in the same pass that searches it, so the hash it records is
/// the hash of exactly the bytes it looked at.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap a reader.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The hash and length of everything read so far.
    #[must_use]
    pub fn finish(self) -> (ContentHash, u64) {
        (ContentHash(self.hasher.finalize().into()), self.len)
    }

    /// Read to the end, so that [`HashingReader::finish`] covers the whole input.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(drop)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The hash of a file's contents, read in a stream.
pub fn hash_file(path: &Path) -> Result<ContentHash, Error> {
    let file = open_regular(path)?;
    let mut reader = HashingReader::new(file);
    reader.drain().map_err(io_err(Action::Read, path))?;
    Ok(reader.finish().0)
}

/// Open `path` for reading if it is a regular file.
///
/// Checking before opening matters: opening a FIFO blocks until a writer appears.
pub fn open_regular(path: &Path) -> Result<File, Error> {
    let meta = fs::symlink_metadata(path).map_err(io_err(Action::Read, path))?;
    if let Some(kind) = not_regular(&meta.file_type()) {
        return Err(Error::NotARegularFile {
            path: path.to_owned(),
            kind,
        });
    }
    let file = File::open(path).map_err(io_err(Action::Read, path))?;
    let opened = file.metadata().map_err(io_err(Action::Read, path))?;
    // The path was swapped for something else between the check and the open.
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(Error::Changed {
            path: path.to_owned(),
        });
    }
    Ok(file)
}

/// [`open_regular`], reaching the file by `route`: with [`Route::Resolved`] no link is
/// followed anywhere on the path ([`Error::Redirected`] for a folder, [`Error::NotARegularFile`]
/// for the file itself), and with a planned [`FileId`] the file must still be that one
/// ([`Error::Changed`]). Reads of a planned file go this way, so that what is read is what a
/// later write through the same route would replace.
pub fn open_regular_via(path: &Path, route: Route) -> Result<File, Error> {
    let (dir, name) = Dir::of(path, route)?;
    let file = dir.open_regular(name, path)?;
    if let Route::Resolved { file: Some(id) } = route {
        let meta = file.metadata().map_err(io_err(Action::Read, path))?;
        if FileId::of(&meta) != id {
            return Err(changed(path));
        }
    }
    Ok(file)
}

/// What a non-regular file is, for messages; `None` for a regular file.
#[must_use]
pub fn not_regular(ft: &fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        None
    } else if ft.is_symlink() {
        Some("a symbolic link")
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_block_device() || ft.is_char_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    }
}

/// What [`rewrite`] returns: the new file's hash and length, and what the transform returned.
#[derive(Debug)]
pub struct Rewritten<T> {
    /// The hash of the bytes now in the file.
    pub hash: ContentHash,
    /// The file's new length.
    pub len: u64,
    /// What the transform returned (for example, how many values it replaced).
    pub output: T,
}

/// Rewrite `path` atomically by streaming it through `transform`.
///
/// `transform` reads the current contents from its first argument and writes the new
/// contents to its second; the file ends up holding exactly what it wrote. It is called
/// once. If it reads only part of the input, the rest is still hashed (so that a changed
/// file is detected) but not copied.
///
/// The file is replaced only if all of these hold; otherwise it is left untouched, and the
/// temporary and lock files are removed:
///
/// - `<path>.lock` could be created (else [`Error::Locked`] or [`Error::LockPathTaken`]);
/// - `path` is a regular file (else [`Error::NotARegularFile`]): rewriting through a symlink
///   would replace the link with a copy;
/// - the bytes read hash to `expected`, and length, mtime and inode are the same right before
///   the rename as when the file was opened (else [`Error::Changed`]);
/// - the original owner can be kept (else [`Error::Owner`]): a file owned by another user is
///   never silently handed to the user running tsrotate;
/// - `transform` succeeded (else [`Error::Transform`], or [`Error::Changed`] if the file also
///   changed, which is the more useful thing to know).
///
/// The new file gets the original mode (including setuid/setgid/sticky bits, set after the
/// owner because `chown` clears them), is fsynced, renamed over `path`, and the directory is
/// fsynced. Extended attributes, ACLs and hard links are not carried over: another hard link
/// to the file keeps the old contents. If only the final directory fsync fails, the file has
/// already been replaced; the error says the sync failed, and a read-back tells the truth.
pub fn rewrite<T>(
    path: &Path,
    expected: &ContentHash,
    transform: impl FnOnce(&mut dyn Read, &mut dyn Write) -> io::Result<T>,
) -> Result<Rewritten<T>, Error> {
    rewrite_via(path, Route::Configured, expected, transform)
}

/// [`rewrite`], reaching the file's directory by `route`.
///
/// The directory is opened once; the lock file, the file itself, the temporary file, the
/// rename and the directory fsync are all relative to that handle, so a folder on the path
/// swapped for a symbolic link halfway through cannot send any of them elsewhere. With
/// [`Route::Resolved`], no link is followed anywhere on the path ([`Error::Redirected`]),
/// and the file must be the one planned ([`Error::Changed`]).
pub fn rewrite_via<T>(
    path: &Path,
    route: Route,
    expected: &ContentHash,
    transform: impl FnOnce(&mut dyn Read, &mut dyn Write) -> io::Result<T>,
) -> Result<Rewritten<T>, Error> {
    let (dir, name) = Dir::of(path, route)?;
    let mut lock = LockGuard::acquire(&dir, path, name)?;
    let source = dir.open_regular(name, path)?;
    let before = source.metadata().map_err(io_err(Action::Read, path))?;
    if let Route::Resolved { file: Some(id) } = route
        && FileId::of(&before) != id
    {
        return Err(changed(path));
    }
    let temp = TempFile::create_in(&dir, path)?;
    lock.note_temp(&temp.name);

    let mut input = HashingReader::new(io::BufReader::with_capacity(STREAM_BUFFER, source));
    let mut output = io::BufWriter::with_capacity(
        STREAM_BUFFER,
        HashingWriter {
            inner: temp.file(),
            hasher: Sha256::new(),
            len: 0,
        },
    );
    let transformed = transform(&mut input, &mut output);
    let drained = input.drain();
    let (read_hash, read_len) = input.finish();
    if drained.is_ok() && (read_hash != *expected || read_len != before.len()) {
        return Err(changed(path));
    }
    let output_value = transformed.map_err(|source| Error::Transform {
        path: path.to_owned(),
        source,
    })?;
    drained.map_err(io_err(Action::Read, path))?;
    let written = output
        .into_inner()
        .map_err(|e| io_err(Action::Write, &temp.path())(e.into_error()))?;
    let (hash, len) = (ContentHash(written.hasher.finalize().into()), written.len);

    temp.copy_owner_and_mode(path, &before)?;
    temp.sync()?;
    ensure_unchanged(&dir, name, path, &before)?;
    temp.persist_over(name, path)?;
    dir.sync()?;
    Ok(Rewritten {
        hash,
        len,
        output: output_value,
    })
}

/// Replace the whole contents of `path` with `bytes`, with every guarantee of [`rewrite`]:
/// for sinks that compute a small file's new contents in memory (a dotenv or JSON file
/// edited by key). `expected` is the hash of the contents the new ones were computed from.
pub fn atomic_write(
    path: &Path,
    expected: &ContentHash,
    bytes: &[u8],
) -> Result<Rewritten<()>, Error> {
    rewrite(path, expected, |_, output| output.write_all(bytes))
}

/// [`atomic_write`], reaching the file's directory by `route` (see [`rewrite_via`]).
pub fn atomic_write_via(
    path: &Path,
    route: Route,
    expected: &ContentHash,
    bytes: &[u8],
) -> Result<Rewritten<()>, Error> {
    rewrite_via(path, route, expected, |_, output| output.write_all(bytes))
}

/// How [`rewrite_via`] reaches a file's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// As configured: symbolic links on the path are the configuration's, followed once
    /// when the directory is opened; every later step is relative to that handle.
    Configured,
    /// The path was resolved to its canonical form when the rotation was planned: a
    /// symbolic link anywhere on it now means it was swapped since, and is refused. With
    /// `file`, the file must also still be that one.
    Resolved {
        /// The planned file's identity, when known.
        file: Option<FileId>,
    },
}

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    /// The device.
    pub dev: u64,
    /// The inode.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `meta` describes.
    #[must_use]
    pub fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A directory handle: everything done to a file in it is done relative to this handle
/// (`openat`, `renameat`, `linkat`, `unlinkat`), never by path again.
struct Dir {
    file: File,
    path: PathBuf,
}

/// Flags for opening a directory to work in.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

impl Dir {
    /// The directory of `path`, opened by `route`, and the file's name in it.
    fn of(path: &Path, route: Route) -> Result<(Self, &OsStr), Error> {
        let name = path.file_name().ok_or_else(|| Error::NotARegularFile {
            path: path.to_owned(),
            kind: "not a file name",
        })?;
        let dir = parent_dir(path);
        let opened = match route {
            Route::Configured => {
                rustix::fs::openat(CWD, dir, dir_flags(), Mode::empty()).map_err(|e| {
                    if e == Errno::NOENT || e == Errno::NOTDIR {
                        Error::MissingFolder {
                            path: path.to_owned(),
                            folder: dir.to_owned(),
                        }
                    } else {
                        io_err(Action::Read, dir)(e.into())
                    }
                })?
            }
            Route::Resolved { .. } => Self::walk(dir, path)?,
        };
        Ok((
            Self {
                file: File::from(opened),
                path: dir.to_owned(),
            },
            name,
        ))
    }

    /// Open `dir` one component at a time, following no symbolic link.
    fn walk(dir: &Path, target: &Path) -> Result<OwnedFd, Error> {
        let flags = dir_flags() | OFlags::NOFOLLOW;
        let start = if dir.is_absolute() { "/" } else { "." };
        let mut at = rustix::fs::openat(CWD, start, flags, Mode::empty())
            .map_err(|e| io_err(Action::Read, dir)(e.into()))?;
        for component in dir.components() {
            let name = match component {
                Component::Normal(name) => name,
                Component::ParentDir => OsStr::new(".."),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            };
            at = rustix::fs::openat(&at, name, flags, Mode::empty()).map_err(|e| {
                if e == Errno::LOOP || e == Errno::NOTDIR {
                    Error::Redirected {
                        path: target.to_owned(),
                    }
                } else if e == Errno::NOENT {
                    Error::FolderGone {
                        path: target.to_owned(),
                    }
                } else {
                    io_err(Action::Read, dir)(e.into())
                }
            })?;
        }
        Ok(at)
    }

    /// What `name` is, without following it if it is a link (`lstat`, through an `O_PATH`
    /// handle so that it stays relative to this directory).
    fn lstat(&self, name: &OsStr) -> io::Result<fs::Metadata> {
        let fd = rustix::fs::openat(
            &self.file,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        File::from(fd).metadata()
    }

    /// Open `name` for reading if it is a regular file (checked first: opening a FIFO
    /// blocks until a writer appears), and check that what opened is what was checked.
    fn open_regular(&self, name: &OsStr, target: &Path) -> Result<File, Error> {
        let meta = self.lstat(name).map_err(io_err(Action::Read, target))?;
        if let Some(kind) = not_regular(&meta.file_type()) {
            return Err(Error::NotARegularFile {
                path: target.to_owned(),
                kind,
            });
        }
        let fd = rustix::fs::openat(
            &self.file,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(Action::Read, target)(e.into()))?;
        let file = File::from(fd);
        let opened = file.metadata().map_err(io_err(Action::Read, target))?;
        if FileId::of(&opened) != FileId::of(&meta) {
            return Err(changed(target));
        }
        Ok(file)
    }

    /// Create `name` exclusively (never through a link), mode 0600.
    fn create_new(&self, name: &OsStr, read: bool) -> io::Result<File> {
        let access = if read { OFlags::RDWR } else { OFlags::WRONLY };
        let fd = rustix::fs::openat(
            &self.file,
            name,
            access | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(File::from(fd))
    }

    fn remove(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.file, name, AtFlags::empty())?)
    }

    /// fsync the directory, so that a rename or a new entry survives a crash.
    fn sync(&self) -> Result<(), Error> {
        self.file
            .sync_all()
            .map_err(io_err(Action::Sync, &self.path))
    }
}

/// Whether [`rewrite_via`] (or [`write_new_private`], for a file that does not exist yet)
/// could write `path` now, reached by `route`. Changes nothing: a rotation asks this of
/// every place before it mints a key, so that a place that cannot be written stops it while
/// nothing has happened yet.
///
/// Checked: the folder exists ([`Error::MissingFolder`]) and takes new files
/// ([`Error::FolderNotWritable`]); an existing file is a regular file whose owner tsrotate
/// can keep ([`Error::NotARegularFile`], [`Error::Owner`]); `<file>.lock` is free or a
/// tsrotate lock ([`Error::LockPathTaken`]: a lock of another run is passing, an unrelated
/// file of that name is not). Not checked: free space, quotas, a read-only bind mount that
/// `access` does not see.
pub fn check_writable(path: &Path, route: Route) -> Result<(), Error> {
    let (dir, name) = Dir::of(path, route)?;
    rustix::fs::accessat(
        &dir.file,
        ".",
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        AtFlags::empty(),
    )
    .map_err(|e| Error::FolderNotWritable {
        path: path.to_owned(),
        folder: dir.path.clone(),
        source: e.into(),
    })?;
    match dir.lstat(name) {
        Ok(meta) => {
            if let Some(kind) = not_regular(&meta.file_type()) {
                return Err(Error::NotARegularFile {
                    path: path.to_owned(),
                    kind,
                });
            }
            if !can_keep_owner(&meta) {
                return Err(Error::Owner {
                    path: path.to_owned(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    source: io::Error::from(io::ErrorKind::PermissionDenied),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(Action::Read, path)(e)),
    }
    let mut lock = name.to_owned();
    lock.push(".lock");
    match dir.lstat(&lock) {
        Ok(_) if !is_our_lock(&dir, &lock) => Err(Error::LockPathTaken {
            path: path.to_owned(),
            lock: lock_path(path),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // The lock cannot be made there at all: a name that is too long with `.lock` added
        // (red team 4: found only after the mint), a folder that cannot be searched.
        Err(e) => Err(io_err(Action::CreateLock, &lock_path(path))(e)),
    }
}

/// `path` with its folder resolved to its canonical form (every link followed); the file
/// itself need not exist. A plan keeps this for each configured place in a file, so that a
/// write can walk it later without following any link ([`Route::Resolved`]).
pub fn resolve_folder(path: &Path) -> Result<PathBuf, Error> {
    let name = path.file_name().ok_or_else(|| Error::NotARegularFile {
        path: path.to_owned(),
        kind: "not a file name",
    })?;
    let folder = parent_dir(path);
    let resolved = fs::canonicalize(folder).map_err(|e| {
        if matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        ) {
            Error::MissingFolder {
                path: path.to_owned(),
                folder: folder.to_owned(),
            }
        } else {
            io_err(Action::Read, folder)(e)
        }
    })?;
    Ok(resolved.join(name))
}

/// Whether a file with this owner can be replaced by one with the same owner: root can give
/// a file to anyone; others only keep their own user, and a group they are in.
fn can_keep_owner(meta: &fs::Metadata) -> bool {
    use rustix::process::{getegid, geteuid, getgroups};
    let euid = geteuid();
    if euid.is_root() {
        return true;
    }
    if meta.uid() != euid.as_raw() {
        return false;
    }
    let gid = meta.gid();
    getegid().as_raw() == gid
        || getgroups().is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}

fn changed(path: &Path) -> Error {
    Error::Changed {
        path: path.to_owned(),
    }
}

/// Whether `name` is still the file we opened, as we opened it.
fn ensure_unchanged(
    dir: &Dir,
    name: &OsStr,
    path: &Path,
    before: &fs::Metadata,
) -> Result<(), Error> {
    let now = dir.lstat(name).map_err(io_err(Action::Read, path))?;
    let same = now.file_type().is_file()
        && (now.dev(), now.ino(), now.len()) == (before.dev(), before.ino(), before.len())
        && (now.mtime(), now.mtime_nsec()) == (before.mtime(), before.mtime_nsec());
    if same { Ok(()) } else { Err(changed(path)) }
}

/// `<path>.lock`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

/// The `O_EXCL` lock [`rewrite`] holds: created on acquire, removed on drop, relative to the
/// directory handle of the file it guards.
///
/// It records who holds it (`pid`, `host`) and the temporary file being written (`temp`), so
/// that a lock left by a process that was killed (SIGKILL, power loss) is recognised as stale
/// on the same host, and removed with its half-written temporary file, instead of blocking
/// `resume` until a person cleans up.
struct LockGuard<'a> {
    dir: &'a Dir,
    name: OsString,
    file: Option<File>,
}

/// This machine's name, to tell whether a lock's process can be checked here.
fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

impl<'a> LockGuard<'a> {
    fn acquire(dir: &'a Dir, target: &Path, name: &OsStr) -> Result<Self, Error> {
        let mut lock = name.to_owned();
        lock.push(".lock");
        match Self::try_acquire(dir, target, lock.clone()) {
            Err(Error::Locked { .. }) if clear_if_stale(dir, &lock) => {
                Self::try_acquire(dir, target, lock)
            }
            other => other,
        }
    }

    fn try_acquire(dir: &'a Dir, target: &Path, name: OsString) -> Result<Self, Error> {
        let path = lock_path(target);
        // The lock appears with its holder already written in it (written beside it, then
        // hard-linked into place, which fails if a lock exists): a process killed at any
        // moment never leaves an anonymous lock that nobody can tell is stale.
        let note = format!("pid {}\nhost {}\n", std::process::id(), host_name());
        let staging = OsString::from(format!(".tsrotate-lock-{:016x}", rand::random::<u64>()));
        let staged = dir.create_new(&staging, false).and_then(|mut f| {
            f.write_all(LOCK_MARKER)
                .and_then(|()| f.write_all(note.as_bytes()))
        });
        let linked = match staged {
            Ok(()) => {
                let linked =
                    rustix::fs::linkat(&dir.file, &staging, &dir.file, &name, AtFlags::empty())
                        .map_err(io::Error::from);
                let _ = dir.remove(&staging);
                linked
            }
            Err(e) => {
                let _ = dir.remove(&staging);
                Err(e)
            }
        };
        let opened = linked.and_then(|()| {
            rustix::fs::openat(
                &dir.file,
                &name,
                OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map(File::from)
            .map_err(io::Error::from)
        });
        match opened {
            Ok(file) => Ok(Self {
                dir,
                name,
                file: Some(file),
            }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(if is_our_lock(dir, &name) {
                Error::Locked {
                    path: target.to_owned(),
                    lock: path,
                }
            } else {
                Error::LockPathTaken {
                    path: target.to_owned(),
                    lock: path,
                }
            }),
            Err(source) => Err(Error::Io {
                action: Action::CreateLock,
                path,
                source,
            }),
        }
    }

    /// Record the temporary file, for whoever finds this lock stale.
    fn note_temp(&mut self, temp: &OsStr) {
        if let Some(file) = &mut self.file {
            let _ = file.write_all(format!("temp {}\n", temp.to_string_lossy()).as_bytes());
        }
    }
}

/// Read a small file of `dir` without following a link.
fn read_in(dir: &Dir, name: &OsStr, limit: u64) -> io::Result<Vec<u8>> {
    let fd = rustix::fs::openat(
        &dir.file,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    File::from(fd).take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Remove a lock of ours whose process is gone (same host, no such pid), and the temporary
/// file it was writing. Returns whether it did. A lock from another host, or whose process
/// lives, is left alone.
fn clear_if_stale(dir: &Dir, lock: &OsStr) -> bool {
    let Ok(text) = read_in(dir, lock, 4096).map(|b| String::from_utf8_lossy(&b).into_owned())
    else {
        return false;
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let (Some(pid), Some(host)) = (field("pid "), field("host ")) else {
        return false;
    };
    if host != host_name() || pid.parse::<u32>().is_err() || Path::new("/proc").join(&pid).exists()
    {
        return false;
    }
    if let Some(temp) = field("temp ").filter(|t| t.starts_with(".tsrotate-") && !t.contains('/')) {
        let _ = dir.remove(OsStr::new(&temp));
    }
    dir.remove(lock).is_ok()
}

/// Whether the existing lock file looks like ours: it starts with the marker, or is empty
/// (its writer died, or is just about to write the marker).
fn is_our_lock(dir: &Dir, lock: &OsStr) -> bool {
    read_in(dir, lock, LOCK_MARKER.len() as u64).is_ok_and(|head| LOCK_MARKER.starts_with(&head))
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.dir.remove(&self.name);
    }
}

/// A temporary file in a directory, removed on drop unless persisted.
struct TempFile<'a> {
    dir: &'a Dir,
    name: OsString,
    file: File,
    persisted: bool,
}

impl<'a> TempFile<'a> {
    /// Create `.tsrotate-<random>.tmp` in `dir`, mode 0600 so the secret is never readable
    /// by others while it is written. The name does not derive from the target's, so that it
    /// fits any name length and matches no `*.conf`-style glob of a directory that loads
    /// every file in it.
    fn create_in(dir: &'a Dir, target: &Path) -> Result<Self, Error> {
        let mut last_err = None;
        for _ in 0..8 {
            let name = OsString::from(format!(".tsrotate-{:016x}.tmp", rand::random::<u64>()));
            match dir.create_new(&name, true) {
                Ok(file) => {
                    return Ok(Self {
                        dir,
                        name,
                        file,
                        persisted: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(io_err(Action::CreateTemp, target)(e)),
            }
        }
        Err(io_err(Action::CreateTemp, target)(last_err.unwrap_or_else(
            || io::Error::from(io::ErrorKind::AlreadyExists),
        )))
    }

    fn path(&self) -> PathBuf {
        self.dir.path.join(&self.name)
    }

    fn file(&self) -> &File {
        &self.file
    }

    /// Give the temporary file the target's owner, then its mode (`chown` clears setuid and
    /// setgid bits, so the mode goes second).
    fn copy_owner_and_mode(&self, target: &Path, original: &fs::Metadata) -> Result<(), Error> {
        let mine = self
            .file
            .metadata()
            .map_err(io_err(Action::Read, &self.path()))?;
        if (mine.uid(), mine.gid()) != (original.uid(), original.gid()) {
            std::os::unix::fs::fchown(&self.file, Some(original.uid()), Some(original.gid()))
                .map_err(|source| Error::Owner {
                    path: target.to_owned(),
                    uid: original.uid(),
                    gid: original.gid(),
                    source,
                })?;
        }
        self.file
            .set_permissions(Permissions::from_mode(original.mode() & 0o7777))
            .map_err(io_err(Action::SetPermissions, target))
    }

    fn sync(&self) -> Result<(), Error> {
        self.file
            .sync_all()
            .map_err(io_err(Action::Sync, &self.path()))
    }

    /// Rename over `name` in the same directory (`renameat`, both sides relative to it).
    fn persist_over(mut self, name: &OsStr, target: &Path) -> Result<(), Error> {
        rustix::fs::renameat(&self.dir.file, &self.name, &self.dir.file, name)
            .map_err(|e| io_err(Action::Replace, target)(e.into()))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = self.dir.remove(&self.name);
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Create a directory and its missing parents, each new one with mode 0700.
///
/// Directories that already exist keep their mode: tightening a directory someone else set
/// up is not this function's call.
pub fn create_private_dir_all(path: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(Action::CreateDir, path))
}

/// Open `path`, which must exist, for appending; never through a symbolic link (an
/// append-only log swapped for a link would send its records elsewhere).
pub fn open_append(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .append(true)
        .custom_flags(nofollow())
        .open(path)
        .map_err(io_err(Action::OpenForAppend, path))
}

/// [`open_append`], creating the file with mode 0600 when it does not exist.
pub fn open_append_private(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nofollow())
        .open(path)
        .map_err(io_err(Action::OpenForAppend, path))
}

fn nofollow() -> i32 {
    i32::try_from(OFlags::NOFOLLOW.bits()).unwrap_or(0)
}

/// Append `bytes` and wait until they are on disk (`fdatasync`). `path` is only for errors.
pub fn append_durable(file: &mut File, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    file.write_all(bytes).map_err(io_err(Action::Write, path))?;
    file.sync_data().map_err(io_err(Action::Sync, path))
}

/// Create `path` with `bytes` and mode 0600, atomically: readers see no file or the whole
/// file, and an existing file is never overwritten ([`Error::AlreadyExists`]).
///
/// The bytes go to a temporary file that is then hard-linked into place, because `link`,
/// unlike `rename`, fails when the name is taken.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_new_private_via(path, Route::Configured, bytes)
}

/// [`write_new_private`], reaching the file's directory by `route` (see [`rewrite_via`]).
pub fn write_new_private_via(path: &Path, route: Route, bytes: &[u8]) -> Result<(), Error> {
    let (dir, name) = Dir::of(path, route)?;
    let temp = TempFile::create_in(&dir, path)?;
    temp.file()
        .write_all(bytes)
        .map_err(io_err(Action::Write, &temp.path()))?;
    temp.sync()?;
    match rustix::fs::linkat(&dir.file, &temp.name, &dir.file, name, AtFlags::empty()) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            return Err(Error::AlreadyExists {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(io_err(Action::Write, path)(e.into())),
    }
    drop(temp);
    dir.sync()
}

/// When [`FileLock::acquire`] gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// Fail at once if another holder has the lock.
    Immediately,
    /// Retry until this much time has passed, then fail.
    AfterWaiting(Duration),
}

/// An advisory, exclusive lock on a lock file, released when dropped (or when the process
/// dies, which is why it, and not an `O_EXCL` file, guards whole rotations: a crashed run
/// leaves nothing stale behind).
///
/// The lock file itself is left in place on drop: removing it would let a waiting process
/// lock the removed inode while a third one creates and locks a new file.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Lock `path`, creating it (mode 0600) if needed. Its directory must exist.
    pub fn acquire(path: &Path, fail: Fail) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_err(Action::CreateLock, path))?;
        let deadline = match fail {
            Fail::Immediately => None,
            Fail::AfterWaiting(wait) => Some(Instant::now() + wait),
        };
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Self {
                        file,
                        path: path.to_owned(),
                    });
                }
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(io_err(Action::Lock, path)(e)),
            }
            let now = Instant::now();
            match deadline {
                Some(deadline) if now < deadline => {
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                _ => {
                    return Err(Error::Busy {
                        path: path.to_owned(),
                    });
                }
            }
        }
    }

    /// The lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes the order explicit.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn upper(input: &mut dyn Read, output: &mut dyn Write) -> io::Result<usize> {
        let mut buf = Vec::new();
        input.read_to_end(&mut buf)?;
        buf.make_ascii_uppercase();
        output.write_all(&buf)?;
        Ok(buf.len())
    }

    /// Red team 4: a file whose name is 250 bytes can be written, but not its `.lock`
    /// (the file system's name limit); the rotation learned that only after minting.
    #[test]
    fn a_file_whose_lock_name_is_too_long_is_not_writable() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("k".repeat(252));
        fs::File::create(&long).unwrap();
        let error = check_writable(&long, Route::Configured).unwrap_err();
        assert!(error.to_string().contains(".lock"), "{error}");
        let short = dir.path().join("k".repeat(200));
        fs::File::create(&short).unwrap();
        assert!(check_writable(&short, Route::Configured).is_ok());
    }

    #[test]
    fn content_hash_round_trips_as_hex() {
        let h = ContentHash::of(b"abc");
        let hex = h.to_string();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), h);
        assert!("xyz".parse::<ContentHash>().is_err());
        assert!("é".repeat(32).parse::<ContentHash>().is_err());
    }

    #[test]
    fn rewrite_replaces_content_and_returns_new_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::File::create(&path)
            .unwrap()
            .write_all(b"hello\r\n")
            .unwrap();
        let before = hash_file(&path).unwrap();
        let done = rewrite(&path, &before, upper).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"HELLO\r\n");
        assert_eq!(done.hash, ContentHash::of(b"HELLO\r\n"));
        assert_eq!((done.len, done.output), (7, 7));
        assert_eq!(listing(dir.path()), ["f"]);
    }

    #[test]
    fn atomic_write_replaces_the_whole_file_only_if_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::File::create(&path)
            .unwrap()
            .write_all(b"A=1\n")
            .unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        let err = atomic_write(&path, &ContentHash::of(b"A=0\n"), b"A=2\n").unwrap_err();
        assert!(matches!(err, Error::Changed { .. }), "{err:?}");
        let done = atomic_write(&path, &ContentHash::of(b"A=1\n"), b"A=2\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"A=2\n");
        assert_eq!(done.hash, ContentHash::of(b"A=2\n"));
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        assert_eq!(listing(dir.path()), ["f"]);
    }

    #[test]
    fn rewrite_refuses_a_file_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::File::create(&path).unwrap().write_all(b"new").unwrap();
        let err = rewrite(&path, &ContentHash::of(b"old"), upper).unwrap_err();
        assert!(matches!(err, Error::Changed { .. }), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(listing(dir.path()), ["f"]);
    }

    #[test]
    fn failing_transform_leaves_target_and_no_debris() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::File::create(&path).unwrap().write_all(b"abc").unwrap();
        let err = rewrite(&path, &ContentHash::of(b"abc"), |_, out| {
            out.write_all(b"partial")?;
            Err::<(), _>(io::Error::other("no"))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Transform { .. }), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        assert_eq!(listing(dir.path()), ["f"]);
    }

    #[test]
    fn a_foreign_dot_lock_file_is_not_called_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Gemfile");
        fs::File::create(&path).unwrap().write_all(b"g").unwrap();
        fs::File::create(dir.path().join("Gemfile.lock"))
            .unwrap()
            .write_all(b"GEM\n")
            .unwrap();
        let err = rewrite(&path, &ContentHash::of(b"g"), upper).unwrap_err();
        assert!(matches!(err, Error::LockPathTaken { .. }), "{err:?}");
        assert!(!err.to_string().contains("remove"));
        assert_eq!(fs::read(dir.path().join("Gemfile.lock")).unwrap(), b"GEM\n");
    }

    #[test]
    fn rewrite_refuses_symlinks_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        fs::File::create(&target).unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = rewrite(&link, &ContentHash::of(b""), upper).unwrap_err();
        assert!(matches!(err, Error::NotARegularFile { .. }), "{err:?}");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn write_new_private_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.json");
        write_new_private(&path, b"{}\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let err = write_new_private(&path, b"other").unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        assert_eq!(listing(dir.path()), ["journal.json"]);
    }

    #[test]
    fn private_dir_and_durable_append() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_private_dir_all(&nested).unwrap();
        for d in [dir.path().join("a"), nested.clone()] {
            assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        }
        let log = nested.join("log");
        write_new_private(&log, b"one\n").unwrap();
        let mut file = OpenOptions::new().append(true).open(&log).unwrap();
        append_durable(&mut file, &log, b"two\n").unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"one\ntwo\n");
        assert_eq!(fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn file_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rotation.lock");
        let held = FileLock::acquire(&path, Fail::Immediately).unwrap();
        // flock locks belong to open file descriptions, so a second open in the same process
        // contends like another process would.
        let err = FileLock::acquire(&path, Fail::Immediately).unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{err:?}");
        let start = Instant::now();
        let wait = Duration::from_millis(30);
        let err = FileLock::acquire(&path, Fail::AfterWaiting(wait)).unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{err:?}");
        assert!(start.elapsed() >= wait);
        drop(held);
        let again = FileLock::acquire(&path, Fail::AfterWaiting(Duration::from_secs(30))).unwrap();
        assert_eq!(again.path(), path);
    }
}
