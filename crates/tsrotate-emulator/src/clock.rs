//! Emulator time: the wall clock plus an offset that only moves forward.
//!
//! Expiry (90-day auth keys, 1-hour OAuth access tokens) has to be testable without sleeping,
//! so every timestamp the emulator hands out or compares comes from [`Clock::now`], and
//! `POST /_emulator/clock` moves the offset forward. The offset is persisted with the state so
//! that a restart does not make keys appear to be created in the future.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The emulator's clock. Timestamps have whole-second precision, as Tailscale's do.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Clock {
    /// Seconds added to the wall clock. Never negative.
    offset_seconds: i64,
}

impl Clock {
    /// The current emulator time, truncated to whole seconds.
    pub(crate) fn now(self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_seconds);
        now.replace_nanosecond(0).unwrap_or(now)
    }

    /// Moves the clock forward. Returns `false` (and changes nothing) if the offset would overflow.
    pub(crate) fn advance(&mut self, seconds: u64) -> bool {
        let Ok(seconds) = i64::try_from(seconds) else {
            return false;
        };
        match self.offset_seconds.checked_add(seconds) {
            // `OffsetDateTime` panics beyond year 9999; keep well inside that range.
            Some(offset) if offset < 200 * 365 * 86_400 => {
                self.offset_seconds = offset;
                true
            }
            _ => false,
        }
    }
}

/// Formats a timestamp the way Tailscale does: RFC 3339, UTC, `Z` suffix, whole seconds.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward_by_the_offset() {
        let mut clock = Clock::default();
        let before = clock.now();
        assert!(clock.advance(3601));
        let after = clock.now();
        let moved = (after - before).whole_seconds();
        // The wall clock may tick by a second between the two reads.
        assert!((3601..=3603).contains(&moved), "moved {moved}s");
    }

    #[test]
    fn absurd_advances_are_refused() {
        let mut clock = Clock::default();
        assert!(!clock.advance(u64::MAX));
        assert!(!clock.advance(300 * 365 * 86_400));
        assert_eq!(clock, Clock::default());
    }

    #[test]
    fn timestamps_have_second_precision_and_z_suffix() {
        let t = time::macros::datetime!(2021-12-09 23:22:39 UTC);
        assert_eq!(rfc3339(t), "2021-12-09T23:22:39Z");
        assert_eq!(Clock::default().now().nanosecond(), 0);
    }
}
