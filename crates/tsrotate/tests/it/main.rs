//! Integration tests for the tsrotate library, one binary for link time (STYLE.md §9).

mod api;
mod files;
