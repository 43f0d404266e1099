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
//! The journal's helpers live here too ([`create_private_dir_all`], [`open_append_private`],
//! [`append_durable`], [`write_new_private`]), and [`FileLock`], the advisory lock that keeps
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

use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
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
    let mut lock = LockGuard::acquire(path)?;
    let source = open_regular(path)?;
    let before = source.metadata().map_err(io_err(Action::Read, path))?;
    let temp = TempFile::create_beside(path)?;
    lock.note_temp(&temp.path);

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
        .map_err(|e| io_err(Action::Write, temp.path())(e.into_error()))?;
    let (hash, len) = (ContentHash(written.hasher.finalize().into()), written.len);

    temp.copy_owner_and_mode(path, &before)?;
    temp.sync()?;
    ensure_unchanged(path, &before)?;
    temp.persist_over(path)?;
    sync_parent(path)?;
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

fn changed(path: &Path) -> Error {
    Error::Changed {
        path: path.to_owned(),
    }
}

/// Whether `path` is still the file we opened, as we opened it.
fn ensure_unchanged(path: &Path, before: &fs::Metadata) -> Result<(), Error> {
    let now = fs::symlink_metadata(path).map_err(io_err(Action::Read, path))?;
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

/// The `O_EXCL` lock [`rewrite`] holds: created on acquire, removed on drop.
///
/// It records who holds it (`pid`, `host`) and the temporary file being written (`temp`), so
/// that a lock left by a process that was killed (SIGKILL, power loss) is recognised as stale
/// on the same host, and removed with its half-written temporary file, instead of blocking
/// `resume` until a person cleans up.
struct LockGuard {
    path: PathBuf,
    file: Option<File>,
}

/// This machine's name, to tell whether a lock's process can be checked here.
fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

impl LockGuard {
    fn acquire(target: &Path) -> Result<Self, Error> {
        match Self::try_acquire(target) {
            Err(Error::Locked { lock, .. }) if clear_if_stale(&lock) => Self::try_acquire(target),
            other => other,
        }
    }

    fn try_acquire(target: &Path) -> Result<Self, Error> {
        let path = lock_path(target);
        // The lock appears with its holder already written in it (written beside it, then
        // hard-linked into place, which fails if a lock exists): a process killed at any
        // moment never leaves an anonymous lock that nobody can tell is stale.
        let note = format!("pid {}\nhost {}\n", std::process::id(), host_name());
        let staging = path.with_file_name(format!(".tsrotate-lock-{:016x}", rand::random::<u64>()));
        let staged = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)
            .and_then(|mut f| {
                f.write_all(LOCK_MARKER)
                    .and_then(|()| f.write_all(note.as_bytes()))
            });
        let linked = match staged {
            Ok(()) => {
                let linked = fs::hard_link(&staging, &path);
                let _ = fs::remove_file(&staging);
                linked
            }
            Err(e) => {
                let _ = fs::remove_file(&staging);
                Err(e)
            }
        };
        let opened = linked.and_then(|()| OpenOptions::new().append(true).open(&path));
        match opened {
            Ok(file) => Ok(Self {
                path,
                file: Some(file),
            }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(if is_our_lock(&path) {
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
}

impl LockGuard {
    /// Record the temporary file, for whoever finds this lock stale.
    fn note_temp(&mut self, temp: &Path) {
        if let (Some(file), Some(name)) = (&mut self.file, temp.file_name()) {
            let _ = file.write_all(format!("temp {}\n", name.to_string_lossy()).as_bytes());
        }
    }
}

/// Remove a lock of ours whose process is gone (same host, no such pid), and the temporary
/// file it was writing. Returns whether it did. A lock from another host, or whose process
/// lives, is left alone.
fn clear_if_stale(lock: &Path) -> bool {
    let Ok(text) = fs::read_to_string(lock) else {
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
        let _ = fs::remove_file(lock.with_file_name(temp));
    }
    fs::remove_file(lock).is_ok()
}

/// Whether the existing lock file looks like ours: it starts with the marker, or is empty
/// (its writer died, or is just about to write the marker).
fn is_our_lock(path: &Path) -> bool {
    let mut head = Vec::with_capacity(LOCK_MARKER.len());
    let read = File::open(path).and_then(|f| {
        f.take(LOCK_MARKER.len() as u64)
            .read_to_end(&mut head)
            .map(drop)
    });
    read.is_ok() && LOCK_MARKER.starts_with(&head)
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A temporary file beside a target, removed on drop unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    /// Create `.tsrotate-<random>.tmp` in the target's directory, mode 0600 so the secret is
    /// never readable by others while it is written. The name does not derive from the
    /// target's, so that it fits any name length and matches no `*.conf`-style glob of a
    /// directory that loads every file in it.
    fn create_beside(target: &Path) -> Result<Self, Error> {
        let dir = parent_dir(target);
        let mut last_err = None;
        for _ in 0..8 {
            let path = dir.join(format!(".tsrotate-{:016x}.tmp", rand::random::<u64>()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Self {
                        path,
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

    fn path(&self) -> &Path {
        &self.path
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
            .map_err(io_err(Action::Read, &self.path))?;
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
            .map_err(io_err(Action::Sync, &self.path))
    }

    fn persist_over(mut self, target: &Path) -> Result<(), Error> {
        #[allow(
            clippy::disallowed_methods,
            reason = "tsrotate::fs is where renames over consumers' files live"
        )]
        fs::rename(&self.path, target).map_err(io_err(Action::Replace, target))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync the directory holding `path`, so that a rename or a new entry survives a crash.
fn sync_parent(path: &Path) -> Result<(), Error> {
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(Action::Sync, dir))
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

/// Open a file for appending, creating it with mode 0600 if it is missing (and then fsyncing
/// its directory, so the new entry is durable before the first record is).
pub fn open_append_private(path: &Path) -> Result<File, Error> {
    let mut options = OpenOptions::new();
    options.append(true).mode(0o600);
    match options.clone().create_new(true).open(path) {
        Ok(file) => {
            sync_parent(path)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options
            .open(path)
            .map_err(io_err(Action::OpenForAppend, path)),
        Err(e) => Err(io_err(Action::OpenForAppend, path)(e)),
    }
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
    let temp = TempFile::create_beside(path)?;
    temp.file()
        .write_all(bytes)
        .map_err(io_err(Action::Write, temp.path()))?;
    temp.sync()?;
    match fs::hard_link(temp.path(), path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyExists {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(io_err(Action::Write, path)(e)),
    }
    drop(temp);
    sync_parent(path)
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
        let mut file = open_append_private(&log).unwrap();
        append_durable(&mut file, &log, b"one\n").unwrap();
        drop(file);
        let mut file = open_append_private(&log).unwrap();
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
