//! Counters a scan updates as it goes, for a progress bar the caller draws.
//!
//! The library never prints; it bumps relaxed atomics that any thread may read at any time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of a running scan.
#[derive(Debug, Default)]
pub struct Progress {
    files: AtomicU64,
    bytes: AtomicU64,
    findings: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Files (or blobs) scanned so far.
    pub files: u64,
    /// Bytes read so far.
    pub bytes: u64,
    /// Findings so far (placeholders excluded).
    pub findings: u64,
}

impl Progress {
    /// Read the counters.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            findings: self.findings.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_finding(&self) {
        self.findings.fetch_add(1, Ordering::Relaxed);
    }
}
