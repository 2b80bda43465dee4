//! A role's `node_labels`: which nodes an allow or deny block is about.
//!
//! ```yaml
//! node_labels:
//!   env: [staging, dev]        # a list: any of them
//!   team: '*'                  # any value, but the label must be there
//!   host: 'web-*'              # a glob: '*' is any run of characters
//!   region: '^eu-(west|north)-[0-9]$'   # a regular expression, matched whole
//!   owner: '{{external.team}}' # the user's trait values, matched literally
//! ```
//!
//! Matching is Teleport's: every key must be on the node with a matching value; `'*': '*'`
//! matches every node, even one without labels; an empty selector matches nothing. A value
//! that starts with `^` and ends with `$` is a regular expression, matched against the whole
//! value (we wrap it as `^(?:…)$`, so `^a|b$` cannot match a value that merely ends in `b`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::template::{Template, TemplateError, Traits, regex_reason};
use crate::config::values::ScalarString;
use crate::resource::check_label_key;

/// The wildcard, as a key or a value.
pub const WILDCARD: &str = "*";

/// A `node_labels` selector: label key to the values it accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(BTreeMap<String, Vec<LabelValue>>);

/// One accepted value of a label, as written; compiled when parsed.
#[derive(Debug, Clone)]
pub struct LabelValue {
    source: String,
    kind: ValueKind,
}

#[derive(Debug, Clone)]
enum ValueKind {
    Any,
    Literal,
    Pattern(Regex),
    Template(Template),
}

impl LabelSelector {
    /// `'*': '*'`: every node.
    pub fn everything() -> Self {
        let any = LabelValue {
            source: WILDCARD.to_owned(),
            kind: ValueKind::Any,
        };
        Self(BTreeMap::from([(WILDCARD.to_owned(), vec![any])]))
    }

    /// No keys: matches no node.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys and their accepted values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[LabelValue])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Resolves templates against a user's traits, for an access checker.
    pub(crate) fn resolve(&self, traits: &Traits) -> NodeMatcher {
        if self.0.is_empty() {
            return NodeMatcher::Nothing;
        }
        if self.matches_everything() {
            return NodeMatcher::Everything;
        }
        let keys = self
            .0
            .iter()
            .map(|(key, values)| {
                let mut matchers = Vec::new();
                for value in values {
                    match &value.kind {
                        ValueKind::Any => matchers.push(Matcher::Any),
                        ValueKind::Literal => matchers.push(Matcher::Literal(value.source.clone())),
                        ValueKind::Pattern(re) => matchers.push(Matcher::Pattern(re.clone())),
                        ValueKind::Template(t) => {
                            matchers.extend(t.expand(traits).into_iter().map(Matcher::Literal));
                        }
                    }
                }
                (key.clone(), matchers)
            })
            .collect::<Vec<_>>();
        // A key whose values all came from missing traits can match no node.
        if keys.iter().any(|(_, matchers)| matchers.is_empty()) {
            return NodeMatcher::Nothing;
        }
        NodeMatcher::Labels(keys)
    }

    /// Teleport's rule: a `*` key whose only value is `*` matches everything, whatever else
    /// the selector says.
    fn matches_everything(&self) -> bool {
        self.0.get(WILDCARD).is_some_and(
            |values| matches!(values.as_slice(), [v] if matches!(v.kind, ValueKind::Any)),
        )
    }
}

/// A `*` key means "any node" and takes only the value `*`; Teleport refuses the rest too.
fn check_entry(key: &str, values: &[LabelValue]) -> Result<(), String> {
    if key.contains("{{") {
        return Err(format!(
            "templates are not supported in label keys ({key:?})"
        ));
    }
    check_label_key(key, true)?;
    if key == WILDCARD && !matches!(values, [v] if matches!(v.kind, ValueKind::Any)) {
        return Err(
            "the label key '*' takes only the value '*' ('*': '*' matches every node)".to_owned(),
        );
    }
    if values.is_empty() {
        return Err(format!(
            "label {key:?} has an empty list of values, which matches nothing; use '*' for any value"
        ));
    }
    Ok(())
}

impl LabelValue {
    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for LabelValue {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for LabelValue {}

impl fmt::Display for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a label value (`prod`, `web-*`, `^db-[0-9]+$`, `{{external.env}}`) was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelValueError {
    /// A `{{ }}` value that is not a valid template.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A `^...$` value that is not a regular expression.
    #[error("invalid regular expression {value:?}: {}", regex_reason(source))]
    Pattern {
        /// The value as written.
        value: String,
        /// The regex crate's error.
        #[source]
        source: regex::Error,
    },
    /// A `*` glob the regex crate could not compile (too large).
    #[error("invalid glob {value:?}: {}", regex_reason(source))]
    Glob {
        /// The value as written.
        value: String,
        /// The regex crate's error.
        #[source]
        source: regex::Error,
    },
}

impl FromStr for LabelValue {
    type Err = LabelValueError;

    fn from_str(s: &str) -> Result<Self, LabelValueError> {
        let kind = if s == WILDCARD {
            ValueKind::Any
        } else if s.contains("{{") || s.contains("}}") {
            ValueKind::Template(s.parse()?)
        } else if s.len() >= 2 && s.starts_with('^') && s.ends_with('$') {
            let body = s
                .strip_prefix('^')
                .and_then(|b| b.strip_suffix('$'))
                .unwrap_or(s);
            let re = Regex::new(&format!("^(?:{body})$")).map_err(|source| {
                LabelValueError::Pattern {
                    value: s.to_owned(),
                    source,
                }
            })?;
            ValueKind::Pattern(re)
        } else if s.contains('*') {
            let glob = s
                .split('*')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(".*");
            let re = Regex::new(&format!("^{glob}$")).map_err(|source| LabelValueError::Glob {
                value: s.to_owned(),
                source,
            })?;
            ValueKind::Pattern(re)
        } else {
            ValueKind::Literal
        };
        Ok(Self {
            source: s.to_owned(),
            kind,
        })
    }
}

impl Serialize for LabelSelector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, values) in &self.0 {
            match values.as_slice() {
                [one] => map.serialize_entry(key, one.as_str())?,
                many => {
                    let texts: Vec<&str> = many.iter().map(LabelValue::as_str).collect();
                    map.serialize_entry(key, &texts)?;
                }
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LabelSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LabelSelector;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of label keys to a value or a list of values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<LabelSelector, E> {
                Ok(LabelSelector::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelSelector, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(ScalarString(key)) = map.next_key()? {
                    let Values(values) = map.next_value()?;
                    check_entry(&key, &values).map_err(de::Error::custom)?;
                    out.insert(key, values);
                }
                Ok(LabelSelector(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them; scalars of any type read as text (`rack: 12`).
struct Values(Vec<LabelValue>);

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label value or a list of label values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Values, E> {
                v.parse().map(|v| Values(vec![v])).map_err(E::custom)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Values, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Values, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Values, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Values, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
                let mut out = Vec::new();
                while let Some(ScalarString(v)) = seq.next_element()? {
                    out.push(v.parse().map_err(de::Error::custom)?);
                }
                Ok(Values(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A selector resolved for one user: what an access checker matches nodes with.
#[derive(Debug, Clone)]
pub(crate) enum NodeMatcher {
    /// Matches no node (an empty selector, or one Jumpgate cannot evaluate in an allow).
    Nothing,
    /// Matches every node (`'*': '*'`, or an unevaluable selector in a deny).
    Everything,
    /// Every key present with a value some matcher accepts.
    Labels(Vec<(String, Vec<Matcher>)>),
}

#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    Any,
    Literal(String),
    Pattern(Regex),
}

impl NodeMatcher {
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            NodeMatcher::Nothing => false,
            NodeMatcher::Everything => true,
            NodeMatcher::Labels(keys) => keys.iter().all(|(key, matchers)| {
                labels.get(key).is_some_and(|value| {
                    matchers.iter().any(|m| match m {
                        Matcher::Any => true,
                        Matcher::Literal(l) => l == value,
                        Matcher::Pattern(re) => re.is_match(value),
                    })
                })
            }),
        }
    }

    pub(crate) fn is_everything(&self) -> bool {
        matches!(self, NodeMatcher::Everything)
    }

    pub(crate) fn is_nothing(&self) -> bool {
        matches!(self, NodeMatcher::Nothing)
    }
}
