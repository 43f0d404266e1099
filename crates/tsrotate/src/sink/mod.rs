//! Sinks: the places that hold a credential and receive its replacement.
//!
//! Each kind of place (a text file, a secret store, a CI variable) is a module here. For now
//! only [`file`] exists: finding credentials in files by key ID and replacing them in place.

pub mod file;
