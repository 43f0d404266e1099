//! Paths in journal records, kept byte for byte.
//!
//! A file name on Unix is bytes, not text. A path that is UTF-8 is written as a plain JSON
//! string, as journals always had it; any other is written as
//! `{"base64": "<the exact bytes>", "display": "<escaped, for people>"}`, as `tsrotate scan`
//! keeps such a name in `path_base64`. Reading takes either form back to the same bytes, so
//! that a later run reaches the very file the plan named (the search again and the pinned
//! write compare paths exactly). Serde's own `PathBuf` support refuses such a path, and a
//! rotation of a file with a non-UTF-8 name could not begin (issue 11 residual).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A path as a journal spells it.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Spelled {
    /// A UTF-8 path, as it is.
    Text(String),
    /// Any other: its bytes, and an escaped form that is never read back.
    Bytes {
        /// Standard base64 of the path's bytes.
        base64: String,
        /// The path with each byte that is not UTF-8 as `\xNN`, for people.
        #[serde(default)]
        display: String,
    },
}

impl Spelled {
    fn of(path: &Path) -> Self {
        match path.to_str() {
            Some(text) => Self::Text(text.to_owned()),
            None => Self::Bytes {
                base64: base64::engine::general_purpose::STANDARD
                    .encode(path.as_os_str().as_bytes()),
                display: crate::text::path(path).into_owned(),
            },
        }
    }

    fn into_path<E: serde::de::Error>(self) -> Result<PathBuf, E> {
        match self {
            Self::Text(text) => Ok(PathBuf::from(text)),
            Self::Bytes { base64, .. } => base64::engine::general_purpose::STANDARD
                .decode(base64.as_bytes())
                .map(|bytes| PathBuf::from(OsString::from_vec(bytes)))
                .map_err(|_| E::custom("a path's base64 is not valid base64")),
        }
    }
}

/// One path (`#[serde(with = "path")]`).
pub(super) fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    Spelled::of(path).serialize(s)
}

/// One path (`#[serde(with = "path")]`).
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    Spelled::deserialize(d)?.into_path()
}

/// A list of paths (`#[serde(with = "path::many")]`).
pub(super) mod many {
    use super::{Deserialize as _, Deserializer, Path, PathBuf, Serializer, Spelled};

    pub(in crate::journal) fn serialize<S: Serializer>(
        paths: &[PathBuf],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(paths.iter().map(|p| Spelled::of(Path::new(p))))
    }

    pub(in crate::journal) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<PathBuf>, D::Error> {
        Vec::<Spelled>::deserialize(d)?
            .into_iter()
            .map(Spelled::into_path)
            .collect()
    }
}

/// A path that may be absent (`#[serde(with = "path::optional")]`).
pub(super) mod optional {
    use super::{Deserialize as _, Deserializer, PathBuf, Serializer, Spelled};

    #[allow(
        clippy::ref_option,
        reason = "serde's `with` hands the field over by reference"
    )]
    pub(in crate::journal) fn serialize<S: Serializer>(
        path: &Option<PathBuf>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match path {
            Some(path) => s.serialize_some(&Spelled::of(path)),
            None => s.serialize_none(),
        }
    }

    pub(in crate::journal) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        Option::<Spelled>::deserialize(d)?
            .map(Spelled::into_path)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Paths {
        #[serde(with = "super")]
        one: PathBuf,
        #[serde(with = "super::many")]
        many: Vec<PathBuf>,
        #[serde(with = "super::optional", default)]
        maybe: Option<PathBuf>,
    }

    #[test]
    fn every_path_round_trips_byte_for_byte_and_utf8_ones_read_as_before() {
        let odd = PathBuf::from(OsString::from_vec(b"/work/caf\xe9/key\xff\n.env".to_vec()));
        let paths = Paths {
            one: odd.clone(),
            many: vec![PathBuf::from("/work/app"), odd.clone()],
            maybe: Some(odd.clone()),
        };
        let json = serde_json::to_string(&paths).unwrap();
        assert_eq!(serde_json::from_str::<Paths>(&json).unwrap(), paths);
        // People see the odd bytes escaped, never raw (a newline would forge a line).
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["one"]["display"], r"/work/caf\xe9/key\xff\n.env",
            "{json}"
        );
        // UTF-8 paths are plain strings, as in journals written before.
        let before = r#"{"one":"/a","many":["/b"],"maybe":null}"#;
        let read: Paths = serde_json::from_str(before).unwrap();
        assert_eq!(read.one, PathBuf::from("/a"));
        assert_eq!(serde_json::to_string(&read).unwrap(), before);
        // Bad base64 is an error, not a different path.
        let bad = r#"{"one":{"base64":"!!"},"many":[]}"#;
        assert!(serde_json::from_str::<Paths>(bad).is_err());
    }
}
