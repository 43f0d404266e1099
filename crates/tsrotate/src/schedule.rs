//! When a managed credential is due: the decision `status` shows and `rotate --due` acts on.
//!
//! A credential is due when its key expires within its `rotate_before` (never less than a
//! day), when its key is already dead (revoked, expired, used up, unknown to the API), or when
//! its places disagree about which key they hold. A rotation left unfinished is due too: it
//! is resumed, not started again. Pure functions of what was read, so every branch is tested.

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::MIN_ROTATE_BEFORE_SECONDS;
use crate::rotate::plan::KeyStatus;

pub mod observe;

pub use observe::{Observed, current_key, observe, observe_all};

/// Why a credential needs attention now, or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Due {
    /// Nothing to do until `next`.
    NotDue {
        /// When it becomes due.
        #[serde(with = "time::serde::rfc3339::option")]
        next: Option<OffsetDateTime>,
    },
    /// The key expires within `rotate_before`.
    Expiring {
        /// When it expires.
        #[serde(with = "time::serde::rfc3339")]
        expires: OffsetDateTime,
    },
    /// The key no longer works.
    Invalid {
        /// What the API says.
        status: KeyStatus,
    },
    /// The places hold different keys.
    OutOfSync,
    /// A rotation of it did not finish; `rotate --due` resumes it.
    Unfinished {
        /// The rotation.
        rotation_id: String,
    },
    /// Its places could not be read, or its key cannot be told.
    Broken {
        /// What is wrong.
        problem: String,
    },
}

impl Due {
    /// Whether `rotate --due` acts on it.
    #[must_use]
    pub fn is_due(&self) -> bool {
        !matches!(self, Self::NotDue { .. } | Self::Broken { .. })
    }

    /// Whether `status` should exit 1 for it.
    #[must_use]
    pub fn needs_attention(&self) -> bool {
        !matches!(self, Self::NotDue { .. })
    }
}

/// What is known of a credential now.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The current key's status, when the key is known.
    pub status: Option<KeyStatus>,
    /// When it expires (auth keys and API tokens; OAuth clients do not expire).
    pub expires: Option<OffsetDateTime>,
    /// Whether every readable place holds the same key.
    pub in_sync: bool,
    /// An unfinished rotation of it.
    pub unfinished: Option<String>,
    /// A reason it cannot be judged.
    pub problem: Option<String>,
}

/// Decide. `rotate_before_seconds` is clamped to at least a day.
#[must_use]
pub fn due(observation: &Observation, rotate_before_seconds: i64, now: OffsetDateTime) -> Due {
    if let Some(rotation_id) = &observation.unfinished {
        return Due::Unfinished {
            rotation_id: rotation_id.clone(),
        };
    }
    if let Some(problem) = &observation.problem {
        return Due::Broken {
            problem: problem.clone(),
        };
    }
    match observation.status {
        Some(status) if !status.is_live() => return Due::Invalid { status },
        None => {
            return Due::Broken {
                problem: "the current key is not known".into(),
            };
        }
        Some(_) => {}
    }
    if !observation.in_sync {
        return Due::OutOfSync;
    }
    let before = time::Duration::seconds(rotate_before_seconds.max(MIN_ROTATE_BEFORE_SECONDS));
    match observation.expires {
        Some(expires) if expires - before <= now => Due::Expiring { expires },
        Some(expires) => Due::NotDue {
            next: Some(expires - before),
        },
        None => Due::NotDue { next: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 00:00 UTC);

    fn live(expires_in_days: i64) -> Observation {
        Observation {
            status: Some(KeyStatus::Live),
            expires: Some(NOW + time::Duration::days(expires_in_days)),
            in_sync: true,
            unfinished: None,
            problem: None,
        }
    }

    #[test]
    fn expiry_within_rotate_before_is_due_and_not_before() {
        let fourteen = 14 * 86_400;
        assert_eq!(
            due(&live(30), fourteen, NOW),
            Due::NotDue {
                next: Some(NOW + time::Duration::days(16))
            }
        );
        assert!(matches!(
            due(&live(14), fourteen, NOW),
            Due::Expiring { .. }
        ));
        assert!(matches!(due(&live(3), fourteen, NOW), Due::Expiring { .. }));
        // Never less than a day before expiry, whatever the configuration says.
        assert!(matches!(
            due(&live(0), 0, NOW + time::Duration::hours(-12)),
            Due::Expiring { .. }
        ));
    }

    #[test]
    fn dead_out_of_sync_unfinished_and_broken() {
        let mut o = live(60);
        o.status = Some(KeyStatus::Revoked);
        assert_eq!(
            due(&o, 86_400, NOW),
            Due::Invalid {
                status: KeyStatus::Revoked
            }
        );
        let mut o = live(60);
        o.in_sync = false;
        assert_eq!(due(&o, 86_400, NOW), Due::OutOfSync);
        let mut o = live(1);
        o.unfinished = Some("r1".into());
        assert_eq!(
            due(&o, 86_400, NOW),
            Due::Unfinished {
                rotation_id: "r1".into()
            }
        );
        let mut o = live(60);
        o.problem = Some("vault unreachable".into());
        assert!(!due(&o, 86_400, NOW).is_due() && due(&o, 86_400, NOW).needs_attention());
        let mut o = live(60);
        o.expires = None;
        assert_eq!(due(&o, 86_400, NOW), Due::NotDue { next: None });
    }
}
