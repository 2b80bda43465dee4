//! From what an identity provider says about a user to Jumpgate roles: `claims_to_roles`
//! (OIDC), `attributes_to_roles` (SAML) and `teams_to_roles` (GitHub) all work the same way.
//!
//! Teleport's semantics, so its connectors keep working:
//! - `value` is matched against each value of the claim, whole: a value starting with `^`
//!   and ending with `$` is a regular expression; otherwise it is literal text in which `*`
//!   matches any run of characters (a glob).
//! - each entry of `roles` may use the expression's captures (`$1`, `${name}`); a glob's
//!   `*`s are captures too, in order. A role that expands to nothing is dropped.
//! - every matching entry adds its roles; the result is sorted and without duplicates.

use std::collections::BTreeSet;
use std::fmt;

use regex::Regex;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::Traits;

/// A claim value pattern: a glob or an anchored regular expression, compiled when the
/// connector is parsed, so a bad one is a resource error naming the field.
#[derive(Debug, Clone)]
pub struct ValuePattern {
    source: String,
    regex: Regex,
}

impl ValuePattern {
    /// Compiles `source` (see the module docs for the two forms).
    pub fn new(source: &str) -> Result<ValuePattern, String> {
        let expression = if source.starts_with('^') && source.ends_with('$') {
            source.to_owned()
        } else {
            let literal: Vec<String> = source.split('*').map(regex::escape).collect();
            format!("^{}$", literal.join("(.*)"))
        };
        let regex = Regex::new(&expression)
            .map_err(|err| format!("{source:?} is not a valid regular expression: {err}"))?;
        Ok(ValuePattern {
            source: source.to_owned(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `value` matches, whole.
    pub fn matches(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// `template` with this pattern's captures of `value` in it, or `None` when `value`
    /// does not match.
    pub fn expand(&self, value: &str, template: &str) -> Option<String> {
        let captures = self.regex.captures(value)?;
        let mut expanded = String::new();
        captures.expand(template, &mut expanded);
        Some(expanded)
    }
}

impl PartialEq for ValuePattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for ValuePattern {}

impl fmt::Display for ValuePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for ValuePattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for ValuePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        ValuePattern::new(&source).map_err(de::Error::custom)
    }
}

/// One mapping entry: when the claim (OIDC) or attribute (SAML) named `claim` has a value
/// matching `value`, the user gets `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// The claim's (or attribute's) name, such as `groups`.
    #[serde(alias = "name")]
    pub claim: String,
    /// What a value must look like.
    pub value: ValuePattern,
    /// Roles granted, each possibly using the value's captures (`$1`).
    pub roles: Vec<String>,
}

/// The roles `mappings` grant a user whose claims are `claims` (module docs for the rules).
pub fn roles_from_claims(mappings: &[ClaimMapping], claims: &Traits) -> Vec<String> {
    let mut roles = BTreeSet::new();
    for mapping in mappings {
        let Some(values) = claims.get(&mapping.claim) else {
            continue;
        };
        for value in values {
            for template in &mapping.roles {
                if let Some(role) = mapping.value.expand(value, template) {
                    let role = role.trim();
                    if !role.is_empty() {
                        roles.insert(role.to_owned());
                    }
                }
            }
        }
    }
    roles.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(claim: &str, value: &str, roles: &[&str]) -> ClaimMapping {
        ClaimMapping {
            claim: claim.to_owned(),
            value: ValuePattern::new(value).unwrap(),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        }
    }

    fn claims(pairs: &[(&str, &[&str])]) -> Traits {
        pairs
            .iter()
            .map(|(name, values)| {
                (
                    (*name).to_owned(),
                    values.iter().map(|value| (*value).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn literal_values_match_whole() {
        let mappings = [mapping("groups", "admins", &["editor", "access"])];
        assert_eq!(
            roles_from_claims(&mappings, &claims(&[("groups", &["devs", "admins"])])),
            ["access", "editor"]
        );
        assert!(roles_from_claims(&mappings, &claims(&[("groups", &["admins-old"])])).is_empty());
        assert!(roles_from_claims(&mappings, &claims(&[("group", &["admins"])])).is_empty());
        // Regular expression syntax in a literal is literal.
        let dotted = [mapping("groups", "a.b", &["x"])];
        assert!(roles_from_claims(&dotted, &claims(&[("groups", &["aXb"])])).is_empty());
    }

    #[test]
    fn globs_capture_their_stars() {
        let mappings = [mapping("groups", "env-*", &["$1-access"])];
        assert_eq!(
            roles_from_claims(&mappings, &claims(&[("groups", &["env-prod", "other"])])),
            ["prod-access"]
        );
    }

    #[test]
    fn regular_expressions_expand_captures_and_drop_empty_roles() {
        let mappings = [mapping("groups", "^admin-(.*)$", &["${1}", "auditor"])];
        assert_eq!(
            roles_from_claims(
                &mappings,
                &claims(&[("groups", &["admin-db", "admin-", "user-x"])])
            ),
            ["auditor", "db"]
        );
    }

    #[test]
    fn a_bad_expression_is_refused_with_its_text() {
        let err = ValuePattern::new("^admin-(.*$").unwrap_err();
        assert!(err.contains("^admin-(.*$"), "{err}");
    }
}
