//! The configuration parser on arbitrary text: it must never panic, and no message it gives
//! may hold a Tailscale credential (the file may hold one by mistake; it is refused, never
//! repeated).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tsrotate::config::Config;
use tsrotate::key::redact_in;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = Config::parse(text, Path::new("fuzz.toml")) {
        let message = error.to_string();
        assert_eq!(redact_in(&message), message, "a credential in a message");
    }
});
