//! Subject and claim patterns, as a federated identity matches them.
//!
//! Tailscale matches the token's `sub` claim (and each custom claim rule) against a pattern in
//! which `*` stands for any run of characters, `:` and `/` included, and everything else is
//! literal. A pattern is only as narrow as the least specific subject it has to accept, so
//! [`fold`] keeps the patterns the workflows need as they are when they agree, and otherwise
//! keeps their common prefix up to a `:` or `/` and says why it had to.

use std::fmt;

/// Whether `value` matches `pattern`, where `*` is any run of characters (possibly empty).
#[must_use]
pub fn matches(pattern: &str, value: &str) -> bool {
    let pattern = pattern.as_bytes();
    let value = value.as_bytes();
    // Iterative wildcard match with one backtrack point: linear in practice, never exponential.
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, v));
            p += 1;
        } else if p < pattern.len() && pattern[p] == value[v] {
            p += 1;
            v += 1;
        } else if let Some((sp, sv)) = star {
            p = sp + 1;
            v = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A subject pattern one consumer needs, and why it is not narrower when it is broad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The pattern, e.g. `repo:acme/app:ref:refs/heads/main`.
    pub pattern: String,
    /// Who needs it (`deploy.yml` job `release`).
    pub consumer: String,
    /// Why the pattern has a wildcard, when it has one.
    pub broad: Option<String>,
}

/// The one pattern an identity gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The subject pattern.
    pub pattern: String,
    /// Why it is broader than an exact subject (empty when it is exact).
    pub reasons: Vec<String>,
}

impl Pattern {
    /// Whether the pattern has a wildcard.
    #[must_use]
    pub fn is_broad(&self) -> bool {
        self.pattern.contains('*')
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// The narrowest single pattern that accepts every need, or `None` when there is none.
#[must_use]
pub fn fold(needs: &[Need]) -> Option<Pattern> {
    let first = needs.first()?;
    let mut reasons: Vec<String> = Vec::new();
    for need in needs {
        if let Some(why) = &need.broad {
            let line = format!("{}: {why}", need.consumer);
            if !reasons.contains(&line) {
                reasons.push(line);
            }
        }
    }
    // A need already covered by another need's pattern adds nothing.
    let mut distinct: Vec<&Need> = Vec::new();
    for need in needs {
        let covered = needs
            .iter()
            .any(|other| other.pattern != need.pattern && matches(&other.pattern, &need.pattern));
        if !covered && !distinct.iter().any(|d| d.pattern == need.pattern) {
            distinct.push(need);
        }
    }
    if distinct.len() <= 1 {
        let pattern = distinct.first().map_or(&first.pattern, |n| &n.pattern);
        return Some(Pattern {
            pattern: pattern.clone(),
            reasons,
        });
    }
    let mut prefix: &str = &distinct[0].pattern;
    for need in &distinct[1..] {
        let common = prefix
            .char_indices()
            .zip(need.pattern.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8());
        prefix = &prefix[..common];
    }
    // Cut back to a separator so that `main` and `master` give `refs/heads/*`, not `ma*`,
    // and never past a wildcard already there.
    let prefix = prefix.split('*').next().unwrap_or_default();
    let cut = prefix.rfind([':', '/']).map_or(0, |i| i + 1);
    let pattern = format!("{}*", &prefix[..cut]);
    let list = distinct
        .iter()
        .map(|n| format!("`{}` ({})", n.pattern, n.consumer))
        .collect::<Vec<_>>()
        .join(", ");
    reasons.push(format!(
        "one identity must accept every consumer's subject: {list}; create one identity per subject to keep each exact"
    ));
    Some(Pattern { pattern, reasons })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(pattern: &str, consumer: &str) -> Need {
        Need {
            pattern: pattern.into(),
            consumer: consumer.into(),
            broad: None,
        }
    }

    #[test]
    fn star_matches_any_run_including_separators() {
        assert!(matches("repo:a/b:*", "repo:a/b:ref:refs/heads/main"));
        assert!(matches(
            "repo:a/*:ref:refs/heads/main",
            "repo:a/b:ref:refs/heads/main"
        ));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(!matches(
            "repo:a/b:ref:refs/heads/main",
            "repo:a/b:ref:refs/heads/mainx"
        ));
        assert!(!matches("repo:a/b", "repo:a/b:x"));
        assert!(matches(
            "repo:a/b:environment:prod",
            "repo:a/b:environment:prod"
        ));
    }

    #[test]
    fn matching_is_not_exponential() {
        let value = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!matches(&pattern, &value));
    }

    #[test]
    fn equal_needs_stay_exact() {
        let p = fold(&[
            need("repo:a/b:ref:refs/heads/main", "x.yml"),
            need("repo:a/b:ref:refs/heads/main", "y.yml"),
        ])
        .unwrap();
        assert_eq!(p.pattern, "repo:a/b:ref:refs/heads/main");
        assert!(!p.is_broad());
        assert!(p.reasons.is_empty());
    }

    #[test]
    fn different_needs_fold_at_a_separator_and_say_why() {
        let p = fold(&[
            need("repo:a/b:ref:refs/heads/main", "x.yml job a"),
            need("repo:a/b:ref:refs/heads/master", "y.yml job b"),
        ])
        .unwrap();
        assert_eq!(p.pattern, "repo:a/b:ref:refs/heads/*");
        assert!(p.reasons[0].contains("x.yml job a"), "{:?}", p.reasons);
        let p = fold(&[
            need("repo:a/b:ref:refs/heads/main", "x"),
            need("repo:a/b:environment:prod", "y"),
        ])
        .unwrap();
        assert_eq!(p.pattern, "repo:a/b:*");
    }

    #[test]
    fn a_need_covered_by_another_adds_nothing() {
        let p = fold(&[
            need("repo:a/b:ref:refs/heads/*", "x"),
            need("repo:a/b:ref:refs/heads/main", "y"),
        ])
        .unwrap();
        assert_eq!(p.pattern, "repo:a/b:ref:refs/heads/*");
        assert!(fold(&[]).is_none());
    }
}
