//! Reading the configured places of a credential: what each holds now, and which key that is.

use futures_util::StreamExt as _;

use crate::config;
use crate::key::{Credential, KeyId};
use crate::sink::{self, Logins, SinkSpec, Snapshot};

/// What one configured place held when it was read.
#[derive(Debug)]
pub struct Reading {
    /// The place.
    pub sink: config::Sink,
    /// The credential it belongs to.
    pub credential: Option<String>,
    /// That credential's `verify` command (empty for none): a rotation that writes this
    /// place runs it before revoking.
    pub credential_verify: Vec<String>,
    /// What it holds, or why it could not be read. Write-only places answer
    /// [`sink::ErrorKind::WriteOnly`].
    pub snapshot: Result<Snapshot, sink::Error>,
    /// Whether it could be written now, checked without writing (files only: a remote
    /// store cannot be asked without a write). `Ok` when it could not be read.
    pub writable: Result<(), sink::Error>,
}

impl Reading {
    /// The key ID of the value the place holds, if it holds a Tailscale credential.
    #[must_use]
    pub fn key_id(&self) -> Option<KeyId> {
        let value = self.snapshot.as_ref().ok()?.value.as_ref()?;
        Credential::parse(value.expose_secret())
            .ok()
            .map(|c| c.key_id().clone())
    }

    /// Why the place cannot be written: the check says so, or it is in a file that could not
    /// be read (a file tsrotate cannot read or make sense of, it cannot edit either).
    #[must_use]
    pub fn unwritable(&self) -> Option<&sink::Error> {
        match (&self.writable, &self.snapshot) {
            (Err(e), _) => Some(e),
            (Ok(()), Err(e)) if sink::file_path(&self.sink.spec).is_some() => Some(e),
            (Ok(()), _) => None,
        }
    }

    /// Whether the place could not be read for a reason other than being write-only.
    #[must_use]
    pub fn failed(&self) -> Option<&sink::Error> {
        match &self.snapshot {
            Err(sink::Error {
                kind: sink::ErrorKind::WriteOnly,
                ..
            })
            | Ok(_) => None,
            Err(e) => Some(e),
        }
    }
}

/// How many places are read at once.
const READ_CONCURRENCY: usize = 8;

/// Read every place of `credential` concurrently.
pub async fn read(credential: &config::Credential, credentials: &Logins) -> Vec<Reading> {
    futures_util::stream::iter(credential.sinks.iter().cloned())
        .map(|place| async move {
            let snapshot = match sink::build(&place.spec, credentials) {
                Ok(s) if s.readable() => s.read().await,
                Ok(s) => Err(sink::Error::write_only(s.describe())),
                Err(e) => Err(e),
            };
            let writable = match &snapshot {
                Ok(_) => check_writable(&place.spec),
                Err(_) => Ok(()),
            };
            Reading {
                sink: place,
                credential: Some(credential.name.clone()),
                credential_verify: credential.verify.clone(),
                snapshot,
                writable,
            }
        })
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
}

/// Whether a place in a file could be written now ([`FieldSink::check_writable`]); other
/// places are taken as writable.
///
/// [`FieldSink::check_writable`]: sink::structured::FieldSink::check_writable
pub fn check_writable(spec: &SinkSpec) -> Result<(), sink::Error> {
    match sink::structured::FieldSink::for_spec(spec) {
        Some(place) => place?.check_writable(),
        None => Ok(()),
    }
}

/// The distinct key IDs the places hold, most common first.
#[must_use]
pub fn held_ids(readings: &[Reading]) -> Vec<(KeyId, usize)> {
    let mut counts: Vec<(KeyId, usize)> = Vec::new();
    for id in readings.iter().filter_map(Reading::key_id) {
        match counts.iter_mut().find(|(k, _)| *k == id) {
            Some((_, n)) => *n += 1,
            None => counts.push((id, 1)),
        }
    }
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts
}
