//! Sealing journals: every record carries an HMAC-SHA256, chained, under a key kept outside
//! the state directory.
//!
//! A state directory only this user can change (`rotate::session::StateDir`) still takes
//! files from anything running as this user, and from wherever it is restored (a CI cache
//! that other branches fill). A journal steers `resume`, `rollback`, `rotate --due` and a
//! containment's `rollback` (which re-authorizes devices), so tsrotate acts only on journals
//! it wrote itself: each record's seal is
//!
//! ```text
//! HMAC-SHA256(key, "tsrotate journal seal 2" ‖ len ‖ kind ‖ len ‖ journal ID ‖ previous seal ‖ record)
//! ```
//!
//! where `kind` names the kind of journal (`started` for rotations, `planned` for
//! containments), the journal ID is the file's name, the previous seal is the one of the
//! record before it (32 zero bytes for the first), and `record` is the line's exact bytes
//! without its `"mac"` member. So a record cannot be edited, moved within its journal, moved
//! to another journal or another kind of journal, and a journal cannot be renamed, without
//! the key.
//!
//! What a seal cannot tell: whether a journal is the latest one tsrotate wrote. Someone who
//! can write the state directory can put back an older copy of a journal, or cut it after any
//! record, which reads like a crash there; what it then says is still something tsrotate
//! wrote, and `resume` and `rollback` ask the API before they act on it. Anyone who can read
//! the key can seal anything.
//!
//! # Security
//!
//! [`JournalKey`] has no `Display`, its `Debug` prints no byte of it, and it is zeroed when
//! dropped. [`KeyFileError`] names the key file and never quotes what is in it.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of a seal and of a key, in bytes.
pub(super) const LEN: usize = 32;

/// What every seal starts with, so that a journal seal is never valid as any other MAC made
/// with the same key.
const DOMAIN: &[u8] = b"tsrotate journal seal 2";

/// The key that seals journals: 32 random bytes, kept outside the state directory.
#[derive(Clone)]
pub struct JournalKey(Zeroizing<[u8; LEN]>);

impl fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JournalKey([redacted])")
    }
}

impl JournalKey {
    /// A key from its bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A new random key (from the thread's cryptographically secure generator, seeded by the
    /// operating system).
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; LEN]);
        rand::RngCore::fill_bytes(&mut rand::rng(), bytes.as_mut_slice());
        Self(bytes)
    }

    /// The key as a key file holds it: 64 lowercase hexadecimal digits and a newline.
    fn to_file_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(2 * LEN + 1));
        for b in self.0.iter() {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        text.push('\n');
        text
    }

    /// The key in a key file's text, or `None` when it holds anything but 64 hexadecimal
    /// digits (surrounding white space aside).
    fn from_file_text(text: &[u8]) -> Option<Self> {
        let text = text.trim_ascii();
        if text.len() != 2 * LEN {
            return None;
        }
        let mut bytes = Zeroizing::new([0u8; LEN]);
        for (i, pair) in text.chunks_exact(2).enumerate() {
            bytes[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(bytes))
    }

    fn mac(&self, kind: &str, id: &str, prev: &[u8; LEN], record: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256>>::new_from_slice(self.0.as_slice()).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        for part in [kind.as_bytes(), id.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(prev);
        mac.update(record);
        mac
    }

    /// The seal of `record` in journal `id` of kind `kind`, after the record sealed `prev`.
    pub(super) fn seal(&self, kind: &str, id: &str, prev: &[u8; LEN], record: &[u8]) -> [u8; LEN] {
        self.mac(kind, id, prev, record)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `seal` is the seal of `record` (compared in constant time).
    pub(super) fn verifies(
        &self,
        kind: &str,
        id: &str,
        prev: &[u8; LEN],
        record: &[u8],
        seal: &[u8; LEN],
    ) -> bool {
        self.mac(kind, id, prev, record).verify_slice(seal).is_ok()
    }

    /// Load the key from `path`, creating it (mode 0600, in folders made 0700) when it does
    /// not exist. Refused: a key file inside `state_dir` (whatever restores or fills the
    /// state directory could then seal journals), one that is not a regular file, not owned
    /// by the user running tsrotate, or that its group or others may read or write. A
    /// symbolic link is followed (a secret mounted by an orchestrator is one) and what it
    /// leads to is judged.
    pub fn load_or_create(path: &Path, state_dir: &Path) -> Result<Self, KeyFileError> {
        let inside = || KeyFileError::InsideStateDir {
            path: path.to_owned(),
            state_dir: state_dir.to_owned(),
        };
        if is_within(&real_path(path), &real_path(state_dir)) {
            return Err(inside());
        }
        let io = |action, source| KeyFileError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        let mut file = match open_nonblocking(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create(path)?;
                open_nonblocking(path).map_err(|e| io("read", e))?
            }
            Err(e) => return Err(io("read", e)),
        };
        // Judged on the open file: what is read is what was checked.
        let meta = file.metadata().map_err(|e| io("read", e))?;
        if !meta.is_file() {
            return Err(KeyFileError::NotRegular {
                path: path.to_owned(),
            });
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(KeyFileError::Owner {
                path: path.to_owned(),
                uid: meta.uid(),
                me,
            });
        }
        // Another name for the same file could be anywhere, the state directory included
        // (a path check cannot see a hard link): a key file has one name (red-team finding).
        if meta.nlink() > 1 {
            return Err(KeyFileError::HardLinked {
                path: path.to_owned(),
                links: meta.nlink(),
            });
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Exposed {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        // Where a symbolic link leads is known only now that it exists.
        if is_within(&real_path(path), &real_path(state_dir)) {
            return Err(inside());
        }
        let mut text = Zeroizing::new(Vec::with_capacity(2 * LEN + 2));
        file.by_ref()
            .take(4 * LEN as u64)
            .read_to_end(&mut text)
            .map_err(|e| io("read", e))?;
        Self::from_file_text(&text).ok_or_else(|| KeyFileError::Malformed {
            path: path.to_owned(),
        })
    }
}

/// Open for reading without waiting: a FIFO put where the key file belongs would otherwise
/// block until someone writes to it; opened this way it is judged (not a regular file) at once.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0))
        .open(path)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The seal as a journal line spells it.
pub(super) fn to_hex(seal: &[u8; LEN]) -> [u8; 2 * LEN] {
    let mut out = [0u8; 2 * LEN];
    for (i, b) in seal.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

/// A seal from its spelling in a journal line (lowercase only, as written).
pub(super) fn from_hex(text: &[u8]) -> Option<[u8; LEN]> {
    if text.len() != 2 * LEN || text.iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    let mut out = [0u8; LEN];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Make a new key file at `path`. Another run making one at the same moment is fine: the
/// file is linked into place whole, never over an existing one, and then read by both.
fn create(path: &Path) -> Result<(), KeyFileError> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::fs::create_private_dir_all(folder).map_err(KeyFileError::Create)?;
    }
    let key = JournalKey::generate();
    match crate::fs::write_new_private(path, key.to_file_text().as_bytes()) {
        Ok(()) | Err(crate::fs::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(KeyFileError::Create(e)),
    }
}

/// `path` with symbolic links resolved as far as it exists (a folder not made yet is taken
/// as written under its nearest existing parent).
fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut rest = Vec::new();
    let mut base = absolute.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(base) {
            return rest.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                base = parent;
            }
            _ => return absolute,
        }
    }
}

fn is_within(path: &Path, folder: &Path) -> bool {
    path.starts_with(folder)
}

/// Why the journal key file cannot be used. Names the file, never what is in it.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading it failed.
    #[error("could not {action} the journal key file `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Making a new one failed.
    #[error("could not create the journal key file: {0}")]
    Create(#[source] crate::fs::Error),
    /// It is inside the state directory, whose contents it is meant to vouch for.
    #[error(
        "the journal key file `{}` is inside the state directory `{}`: whatever can put journals there could then seal them",
        path.display(), state_dir.display()
    )]
    InsideStateDir {
        /// The key file.
        path: PathBuf,
        /// The state directory.
        state_dir: PathBuf,
    },
    /// Not a regular file.
    #[error("the journal key file `{}` is not a regular file", path.display())]
    NotRegular {
        /// The key file.
        path: PathBuf,
    },
    /// Owned by someone else.
    #[error(
        "the journal key file `{}` is owned by uid {uid}, not by the user running tsrotate (uid {me})",
        path.display()
    )]
    Owner {
        /// The key file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The user running tsrotate.
        me: u32,
    },
    /// Its group or others may read or write it.
    #[error(
        "the journal key file `{}` can be read or written by its group or by others (mode {mode:o})",
        path.display()
    )]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It has other names (hard links), which may lie inside the state directory.
    #[error(
        "the journal key file `{}` has {links} names (hard links): another name could be inside the state directory, or anywhere",
        path.display()
    )]
    HardLinked {
        /// The key file.
        path: PathBuf,
        /// How many names it has.
        links: u64,
    },
    /// It does not hold 64 hexadecimal digits.
    #[error(
        "the journal key file `{}` does not hold a journal key (64 hexadecimal digits)",
        path.display()
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
}

impl KeyFileError {
    /// What the person can do about it.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::Io { .. } | Self::Create(_) => {
                "give a key file tsrotate can read with TSROTATE_JOURNAL_KEY_FILE".to_owned()
            }
            Self::HardLinked { path, .. } => format!(
                "find the file's other names (`find / -samefile {}`) and remove them, or make a new key file",
                path.display()
            ),
            Self::InsideStateDir { .. } => {
                "keep the key elsewhere (TSROTATE_JOURNAL_KEY_FILE, default ~/.config/tsrotate/journal.key), e.g. from a CI secret".to_owned()
            }
            Self::NotRegular { .. } | Self::Malformed { .. } => {
                "make one with `(umask 077; openssl rand -hex 32 > FILE)`, or let tsrotate create it at a path that does not exist yet".to_owned()
            }
            Self::Owner { path, .. } => format!(
                "use a key file of your own, or `chown` `{}` once you know where it comes from",
                path.display()
            ),
            Self::Exposed { path, .. } => format!(
                "`chmod 600 {}`; if others could read it, make a new key (journals sealed with the old one will be refused: settle them first)",
                path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// Red-team finding: a hard link of the key file inside the state directory passed the
    /// path check, so a cache or backup of the state directory carried the sealing key.
    #[test]
    fn a_key_file_with_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/journal.key");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        JournalKey::load_or_create(&path, &state).unwrap();
        std::fs::hard_link(&path, state.join("journal.key")).unwrap();
        let err = JournalKey::load_or_create(&path, &state).unwrap_err();
        assert!(
            matches!(err, KeyFileError::HardLinked { links: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_key_file_is_created_private_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/tsrotate/journal.key");
        let state = dir.path().join("state");
        let key = JournalKey::load_or_create(&path, &state).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let again = JournalKey::load_or_create(&path, &state).unwrap();
        assert_eq!(
            key.seal("k", "i", &[0; LEN], b"x"),
            again.seal("k", "i", &[0; LEN], b"x")
        );
        assert_eq!(format!("{key:?}"), "JournalKey([redacted])");
    }

    #[test]
    fn a_key_file_in_the_state_directory_or_open_to_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let inside = state.join("journal.key");
        assert!(matches!(
            JournalKey::load_or_create(&inside, &state),
            Err(KeyFileError::InsideStateDir { .. })
        ));
        assert!(!inside.exists(), "nothing is created there");
        // A link from outside into the state directory is judged by where it leads.
        std::fs::create_dir_all(&state).unwrap();
        let real = state.join("k");
        #[allow(clippy::disallowed_methods, reason = "a test fixture")]
        std::fs::write(&real, "00".repeat(32)).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            JournalKey::load_or_create(&link, &state),
            Err(KeyFileError::InsideStateDir { .. })
        ));
        let open = dir.path().join("open.key");
        #[allow(clippy::disallowed_methods, reason = "a test fixture")]
        std::fs::write(&open, "ab".repeat(32)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = JournalKey::load_or_create(&open, &state).unwrap_err();
        assert!(matches!(error, KeyFileError::Exposed { .. }), "{error}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(JournalKey::load_or_create(&open, &state).is_ok());
        #[allow(clippy::disallowed_methods, reason = "a test fixture")]
        std::fs::write(&open, "tskey-not-a-journal-key").unwrap();
        let error = JournalKey::load_or_create(&open, &state).unwrap_err();
        assert!(matches!(error, KeyFileError::Malformed { .. }));
        assert!(!error.to_string().contains("tskey"), "{error}");
        // A FIFO is refused at once, not waited on.
        let fifo = dir.path().join("fifo.key");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(
            JournalKey::load_or_create(&fifo, &state),
            Err(KeyFileError::NotRegular { .. })
        ));
    }
}
