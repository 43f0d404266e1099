//! The `tsrotate` binary.
fn main() {}
