//! The journal reader on arbitrary bytes. A journal comes from the state directory, so its
//! bytes are input: reading, verifying and replaying them must never panic, whatever they
//! hold, and every question `resume`, `rollback` and `status` ask of the replayed state must
//! be answerable. `status` and `abandon` replay journals whose seal does not verify too, so
//! every journal that parses is replayed, sealed or not.
//!
//! The seeds in `fuzz/seeds/journal/` are sealed with [`FUZZ_KEY`] under the ID `fuzz` (the
//! file name below), so that mutations of them explore the verified path as well as the
//! broken one; the `v1-*` seeds are journals of tsrotate 1, without seals.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tsrotate::journal::{self, JournalKey, Seal};
use tsrotate::rotate::State;

/// The key the seeds are sealed with.
const FUZZ_KEY: [u8; 32] = [0x5a; 32];

fuzz_target!(|data: &[u8]| {
    let key = JournalKey::from_bytes(FUZZ_KEY);
    let Ok((records, seal)) =
        journal::parse::<journal::Event>(data, Path::new("fuzz.jsonl"), Some(&key))
    else {
        return;
    };
    assert!(
        !records.is_empty(),
        "an accepted journal has its started record"
    );
    if let Seal::Broken { line, .. } = seal {
        let lines = data.split(|&b| b == b'\n').count();
        assert!((1..=lines).contains(&line), "line {line} of {lines}");
    }
    // Without the key nothing verifies: a seal is never taken on the journal's word.
    let (unkeyed, unsealed) = journal::parse::<journal::Event>(data, Path::new("fuzz.jsonl"), None)
        .expect("the same bytes parse the same without a key");
    assert_eq!(unkeyed.len(), records.len());
    assert_ne!(unsealed, Seal::Intact, "verified without a key");
    let Some(state) = State::replay(&records) else {
        return;
    };
    let _ = state.next(None);
    let _ = state.next(Some(state.old_key_id()));
    let _ = state.next_rollback();
    let _ = state.verify_commands();
    let _ = state.known_ids();
    let _ = state.reusable();
    let _ = (
        state.is_finished(),
        state.old_revoked(),
        state.old_seen_by_api(),
    );
    let _ = state.needs_key(None);
});
