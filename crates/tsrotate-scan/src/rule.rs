//! Rules as data: which credential types we report, how we describe them, and the examples that
//! keep them honest.
//!
//! The rules live in `rules/tailscale.yml`, compiled into the binary with `include_str!` so a
//! scan never depends on files next to the executable. Each rule names a credential type word
//! (`auth`, `api`, …); matching itself is structural and shared (see [`crate::matcher`]), so a
//! rule cannot drift from the parser that rotation uses.

use std::sync::LazyLock;

use serde::Deserialize;

use crate::placeholder::PlaceholderPolicy;

const RULES_YAML: &str = include_str!("../rules/tailscale.yml");

/// The type word of the catch-all rule.
const ANY_TYPE: &str = "*";

/// One kind of credential we report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A stable identifier, e.g. `tailscale.auth-key` (SARIF `ruleId`).
    pub id: String,
    /// A short human name.
    pub name: String,
    /// The type word between `tskey-` and the key ID, or `*` for any other.
    #[serde(rename = "type")]
    pub type_word: String,
    /// What the credential grants, and so why a leak matters.
    pub description: String,
    /// What to do about a finding.
    pub help: String,
    /// Texts that must yield exactly one finding of this rule.
    pub examples: Vec<String>,
    /// Texts that must yield no finding.
    pub negative_examples: Vec<String>,
}

/// All rules and the placeholder policy, as loaded from the YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// How placeholders are told from real credentials.
    pub placeholders: PlaceholderPolicy,
    /// The rules, the catch-all last.
    pub rules: Vec<Rule>,
}

static BUILTIN: LazyLock<RuleSet> = LazyLock::new(|| {
    let set: RuleSet =
        serde_yaml_ng::from_str(RULES_YAML).expect("rules/tailscale.yml is checked by tests");
    assert!(
        set.rules.iter().any(|r| r.type_word == ANY_TYPE),
        "rules/tailscale.yml needs a catch-all rule"
    );
    set
});

impl RuleSet {
    /// The rules built into this binary.
    #[must_use]
    pub fn builtin() -> &'static Self {
        &BUILTIN
    }

    /// The rule for a credential's type word: its own, or the catch-all.
    #[must_use]
    pub fn for_type(&self, type_word: &str) -> &Rule {
        self.rules
            .iter()
            .find(|r| r.type_word == type_word)
            .or_else(|| self.rules.iter().find(|r| r.type_word == ANY_TYPE))
            .expect("the catch-all rule exists")
    }

    /// The position of a rule in [`RuleSet::rules`] (SARIF `ruleIndex`).
    #[must_use]
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::{Matcher, Verdict};

    fn verdicts(text: &str) -> Vec<Verdict> {
        let mut out = Vec::new();
        Matcher::new().scan_all(text.as_bytes(), &mut |m| out.push(m.verdict));
        out
    }

    #[test]
    fn rules_check_examples() {
        let set = RuleSet::builtin();
        for rule in &set.rules {
            assert!(!rule.examples.is_empty(), "{} has no examples", rule.id);
            assert!(
                !rule.negative_examples.is_empty(),
                "{} has no negative examples",
                rule.id
            );
            for example in &rule.examples {
                let mut found = Vec::new();
                Matcher::new().scan_all(example.as_bytes(), &mut |m| found.push(m));
                assert_eq!(found.len(), 1, "{}: example {example:?}", rule.id);
                assert_eq!(
                    found[0].verdict,
                    Verdict::Finding,
                    "{}: example {example:?} is not a finding",
                    rule.id
                );
                assert_eq!(
                    set.for_type(found[0].credential.kind().type_word()).id,
                    rule.id,
                    "{}: example {example:?} matched another rule",
                    rule.id
                );
            }
            for counter in &rule.negative_examples {
                assert!(
                    !verdicts(counter).contains(&Verdict::Finding),
                    "{}: negative example {counter:?} was reported",
                    rule.id
                );
            }
        }
    }

    #[test]
    fn rule_ids_are_unique_and_catch_all_is_last() {
        let set = RuleSet::builtin();
        let mut ids: Vec<_> = set.rules.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), set.rules.len());
        assert_eq!(set.rules.last().map(|r| r.type_word.as_str()), Some("*"));
        assert_eq!(set.for_type("oauth").id, "tailscale.unknown");
        assert_eq!(set.for_type("auth").id, "tailscale.auth-key");
    }
}
