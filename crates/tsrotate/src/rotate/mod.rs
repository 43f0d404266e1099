//! The rotation protocol: plan, mint, distribute, verify, revoke; resume and rollback.
//!
//! [`state`] is the protocol as a pure function of the journal, [`engine`] performs its steps
//! against a [`World`], and [`world`] is the real world: the Tailscale API, files and a
//! verification command.

pub mod engine;
pub mod places;
pub mod plan;
pub mod session;
pub mod state;
pub mod world;

pub use engine::{
    Cause, Executor, Liveness, MintedKey, Observer, OldKey, Quiet, Recorder, Remedy, Revocation,
    Stale, StepError, Stop, World, mint_description,
};
pub use state::{End, RollbackRefused, RollbackStep, State, Step};

#[cfg(test)]
mod tests;
