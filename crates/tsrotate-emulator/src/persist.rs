//! The state file: load on start, save atomically after each mutation.
//!
//! A save writes a temporary file in the same directory (mode `0o600` on Unix), fsyncs it,
//! renames it over the target and fsyncs the directory, so a crash leaves either the old or the
//! new state, never a torn file. Two emulators must not share one state file; nothing locks it.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    error::Error,
    state::{BootstrapSecrets, Store},
};

/// Bumped on any incompatible change to the records in `model.rs` or `state.rs`.
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateFileRef<'a> {
    version: u32,
    bootstrap: &'a BootstrapSecrets,
    #[serde(flatten)]
    store: &'a Store,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateFile {
    // `version` is checked separately through `VersionOnly`.
    bootstrap: BootstrapSecrets,
    #[serde(flatten)]
    store: Store,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

/// Reads the state file, or `Ok(None)` if it does not exist yet.
pub(crate) fn load(path: &Path) -> Result<Option<(BootstrapSecrets, Store)>, Error> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::ReadState {
                path: path.to_owned(),
                source,
            });
        }
    };
    let parse_error = |source| Error::ParseState {
        path: path.to_owned(),
        source,
    };
    // Check the version first so that a future format fails with a clear message rather than
    // a field-level parse error.
    let VersionOnly { version } = serde_json::from_slice(&bytes).map_err(parse_error)?;
    if version != FORMAT_VERSION {
        return Err(Error::StateVersion {
            path: path.to_owned(),
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let file: StateFile = serde_json::from_slice(&bytes).map_err(parse_error)?;
    Ok(Some((file.bootstrap, file.store)))
}

/// Writes the state file atomically.
pub(crate) fn save(path: &Path, bootstrap: &BootstrapSecrets, store: &Store) -> Result<(), Error> {
    let write_error = |source| Error::WriteState {
        path: path.to_owned(),
        source,
    };
    let mut bytes = serde_json::to_vec_pretty(&StateFileRef {
        version: FORMAT_VERSION,
        bootstrap,
        store,
    })
    .map_err(|e| write_error(std::io::Error::other(e)))?;
    bytes.push(b'\n');

    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}",
        crate::secret::random_alphanumeric(8)
    ));

    let result = write_synced(&tmp, &bytes).and_then(|()| {
        // The emulator must not depend on the `tsrotate` crate (it is an independent
        // implementation of the API contract), so it cannot use `tsrotate::fs::atomic_write`;
        // this is the emulator's own state file, not a consumer's file.
        #[allow(clippy::disallowed_methods)]
        fs::rename(&tmp, path)
    });
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_error(source));
    }
    sync_dir(&dir);
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // The file holds the bootstrap credentials.
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the rename durable. Best effort: not every platform can open a directory.
fn sync_dir(dir: &Path) {
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}
