//! The journal reader on arbitrary bytes. A journal comes from the state directory, so its
//! bytes are input: reading and replaying them must never panic, whatever they hold, and every
//! question `resume`, `rollback` and `status` ask of the replayed state must be answerable.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tsrotate::journal;
use tsrotate::rotate::State;

fuzz_target!(|data: &[u8]| {
    let Ok(records) = journal::parse::<journal::Event>(data, Path::new("fuzz.jsonl")) else {
        return;
    };
    assert!(
        !records.is_empty(),
        "an accepted journal has its started record"
    );
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
