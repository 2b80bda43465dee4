//! Cluster resources in Teleport's shape, so that Teleport users can reuse their files:
//!
//! ```yaml
//! kind: role
//! version: v7
//! metadata:
//!   name: dev
//!   description: Developers
//!   labels: {team: platform}
//!   expires: 2030-01-01T00:00:00Z
//! spec: { ... }
//! ```
//!
//! [`Resource<S>`] is that envelope around a typed spec `S`; the kind is a property of the spec
//! type ([`ResourceSpec::KIND`]), not a field a caller could get wrong. Parsing goes through the
//! same three steps as the config (see `crate::config`): text to a YAML value (syntax errors
//! with line and column), a check of `kind` (so a user file given as a role says so, rather
//! than failing on its first spec key), then typed deserialisation with the field path of any
//! error and a "did you mean" for unknown keys. Specs validate while they deserialise (regexes
//! compiled, templates parsed), so a value of a spec type is always usable.

mod error;
mod locate;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_norway::Value;

pub use error::{ResourceError, TimeError, UnknownVersion};
pub use locate::locate_field;

use crate::config::Location;
use crate::config::error::{from_serde, suggest, yaml_syntax};
use crate::config::values::{ScalarString, from_str};

/// A spec type that can sit in a [`Resource`] envelope.
pub trait ResourceSpec: Serialize + DeserializeOwned {
    /// The `kind:` of documents holding this spec (`role`).
    const KIND: &'static str;
    /// The version Jumpgate writes for new resources of this kind.
    const VERSION: ResourceVersion;
}

/// A resource: `kind` (from `S`), `version`, `metadata` and a typed `spec`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource<S> {
    /// The version the document declared; kept so a resource is written back as it came.
    pub version: ResourceVersion,
    /// Name, description, labels, expiry.
    pub metadata: Metadata,
    /// What the resource says.
    pub spec: S,
}

impl<S: ResourceSpec> Resource<S> {
    /// A resource of the version Jumpgate writes.
    pub fn new(metadata: Metadata, spec: S) -> Self {
        Self {
            version: S::VERSION,
            metadata,
            spec,
        }
    }

    /// The kind, as written in documents (`role`).
    pub fn kind(&self) -> &'static str {
        S::KIND
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        self.metadata.name.as_str()
    }

    /// Parses and validates a YAML document (JSON is accepted too, being YAML). `source_name`
    /// names the text in errors; the caller reads it (this crate does no I/O).
    pub fn from_yaml(source_name: &str, text: &str) -> Result<Self, ResourceError> {
        let value = document_from_yaml(source_name, text)?;
        Self::from_value(source_name, value)
    }

    /// Parses and validates a JSON document (how the auth service stores resources).
    pub fn from_json(source_name: &str, text: &str) -> Result<Self, ResourceError> {
        let value = document_from_json(source_name, text)?;
        Self::from_value(source_name, value)
    }

    fn from_value(source_name: &str, value: Value) -> Result<Self, ResourceError> {
        check_kind(source_name, &value, S::KIND)?;
        serde_path_to_error::deserialize(value).map_err(|e| {
            let invalid = from_serde(e);
            ResourceError::Field {
                source_name: source_name.to_owned(),
                path: invalid.path,
                reason: invalid.reason,
            }
        })
    }

    /// The resource as YAML, in the shape it is read.
    pub fn to_yaml(&self) -> Result<String, ResourceError> {
        serde_norway::to_string(self).map_err(|e| ResourceError::Encode {
            reason: e.to_string(),
        })
    }

    /// The resource as pretty-printed JSON, in the shape it is read.
    pub fn to_json(&self) -> Result<String, ResourceError> {
        serde_json::to_string_pretty(self).map_err(|e| ResourceError::Encode {
            reason: e.to_string(),
        })
    }
}

/// Reads a time the way resource documents write one (`metadata.expires`, a lock's
/// `spec.expires`): RFC 3339, with fractions of a second and `+hh:mm` offsets. For tools that
/// take such a time on their command line (`jctl lock --expires`) and build the resource.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, TimeError> {
    rfc3339::parse(text)
}

/// The `kind` of a YAML or JSON resource document, checked to be a non-empty string, so that
/// `jctl create` can pick the parser for a file before parsing it.
pub fn peek_kind(source_name: &str, text: &str) -> Result<String, ResourceError> {
    // JSON is YAML, so one parser reads both.
    let value = document_from_yaml(source_name, text)?;
    let field = |reason: &str| ResourceError::Field {
        source_name: source_name.to_owned(),
        path: "kind".to_owned(),
        reason: reason.to_owned(),
    };
    match value.get("kind") {
        None | Some(Value::Null) => Err(field("is required")),
        Some(Value::String(kind)) if !kind.trim().is_empty() => Ok(kind.clone()),
        Some(_) => Err(field("expected a kind such as `role`")),
    }
}

impl<S: ResourceSpec> Serialize for Resource<S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        #[derive(Serialize)]
        struct Envelope<'a, S> {
            kind: &'static str,
            version: ResourceVersion,
            metadata: &'a Metadata,
            spec: &'a S,
        }
        Envelope {
            kind: S::KIND,
            version: self.version,
            metadata: &self.metadata,
            spec: &self.spec,
        }
        .serialize(serializer)
    }
}

impl<'de, S: ResourceSpec> Deserialize<'de> for Resource<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            deny_unknown_fields,
            expecting = "a mapping with kind, version, metadata and spec"
        )]
        struct Envelope<S> {
            kind: String,
            version: ResourceVersion,
            metadata: Metadata,
            spec: S,
        }
        let e = Envelope::<S>::deserialize(d)?;
        if e.kind != S::KIND {
            // `from_yaml` checks this first with a better message; this guards other callers.
            return Err(de::Error::custom(format_args!(
                "expected kind `{}`, got `{}`",
                S::KIND,
                e.kind
            )));
        }
        Ok(Self {
            version: e.version,
            metadata: e.metadata,
            spec: e.spec,
        })
    }
}

/// The `version` of a resource document. Teleport has written `v1` to `v8` over the years
/// (roles are `v3`…`v8`; the differences are in features Jumpgate does not have yet), so all
/// are read; Jumpgate writes each kind's [`ResourceSpec::VERSION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum ResourceVersion {
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
}

impl ResourceVersion {
    const ALL: [ResourceVersion; 8] = [
        Self::V1,
        Self::V2,
        Self::V3,
        Self::V4,
        Self::V5,
        Self::V6,
        Self::V7,
        Self::V8,
    ];

    /// As written in documents: `v7`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::V3 => "v3",
            Self::V4 => "v4",
            Self::V5 => "v5",
            Self::V6 => "v6",
            Self::V7 => "v7",
            Self::V8 => "v8",
        }
    }
}

impl fmt::Display for ResourceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceVersion {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, UnknownVersion> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownVersion(s.to_owned()))
    }
}

impl Serialize for ResourceVersion {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResourceVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d)
    }
}

/// A resource's `metadata`. Teleport also writes `namespace: default`, `revision` and (older
/// versions) `id`; they are read and dropped, since Jumpgate has one namespace and keeps
/// revisions in the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with at least a name")]
pub struct Metadata {
    /// The resource's name, unique within its kind.
    pub name: ResourceName,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels on the resource itself (not the node labels a role selects).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: BTreeMap<String, String>,
    /// When the resource stops existing; the backend deletes it then. Written in RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339")]
    pub expires: Option<SystemTime>,
    #[serde(default, skip_serializing, deserialize_with = "default_namespace")]
    namespace: (),
    #[serde(default, skip_serializing, deserialize_with = "ignore")]
    revision: (),
    #[serde(default, skip_serializing, deserialize_with = "ignore")]
    id: (),
}

impl Metadata {
    /// Metadata with only a name.
    pub fn new(name: ResourceName) -> Self {
        Self {
            name,
            description: None,
            labels: BTreeMap::new(),
            expires: None,
            namespace: (),
            revision: (),
            id: (),
        }
    }

    /// Whether the resource has expired at `now` (the caller's clock: no wall-clock reads here).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }
}

/// A resource name: 1 to 253 characters from `a-z A-Z 0-9 . _ @ -`. Names end up in backend
/// keys, certificate extensions and audit events, so nothing that could need escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceName(String);

/// Why a string is not a valid [`ResourceName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(String);

impl ResourceName {
    /// The longest name accepted (a DNS name's limit, as in Teleport).
    pub const MAX_LEN: usize = 253;

    /// Validates a name.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidName("a name must not be empty".to_owned()));
        }
        if name.len() > Self::MAX_LEN {
            return Err(InvalidName(format!(
                "a name must be at most {} characters, got {}",
                Self::MAX_LEN,
                name.len()
            )));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._@-".contains(*c)))
        {
            return Err(InvalidName(format!(
                "{name:?} contains {bad:?}; names may use letters, digits, '.', '_', '@' and '-'"
            )));
        }
        Ok(Self(name))
    }

    /// A name known at compile time to be valid (the built-in roles'); a unit test checks each.
    pub(crate) fn trusted(name: &'static str) -> Self {
        Self(name.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ResourceName {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<Self, InvalidName> {
        Self::new(s)
    }
}

impl Serialize for ResourceName {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ResourceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ScalarString(name) = ScalarString::deserialize(d)?;
        Self::new(name).map_err(de::Error::custom)
    }
}

/// Checks a label key: Teleport's alphabet (`a-z A-Z 0-9 / . _ : -`), plus `*` where the
/// caller allows the wildcard key of a role's `node_labels`.
pub(crate) fn check_label_key(key: &str, allow_wildcard: bool) -> Result<(), String> {
    if allow_wildcard && key == "*" {
        return Ok(());
    }
    let ok = !key.is_empty()
        && key.len() <= ResourceName::MAX_LEN
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "label key {key:?} must be 1 to {} characters from letters, digits, '/', '.', '_', ':' and '-'{}",
            ResourceName::MAX_LEN,
            if allow_wildcard { ", or be '*'" } else { "" }
        ))
    }
}

/// `deserialize_with` for `metadata.labels`: keys checked, scalar values read as text
/// (`rack: 12`).
fn labels<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of label keys to values")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(ScalarString(key)) = map.next_key()? {
                check_label_key(&key, false).map_err(de::Error::custom)?;
                let ScalarString(value) = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// `deserialize_with` for `metadata.namespace`: Teleport's only namespace is `default`.
fn default_namespace<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    let namespace = Option::<String>::deserialize(d)?;
    match namespace.as_deref() {
        None | Some("default") => Ok(()),
        Some(other) => Err(de::Error::custom(format_args!(
            "namespace {other:?} is not supported; the only namespace is \"default\" (or leave it out)"
        ))),
    }
}

/// `deserialize_with` for metadata Teleport writes that has no meaning here.
fn ignore<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    IgnoredAny::deserialize(d).map(|_| ())
}

/// RFC 3339 times: `2030-01-02T15:04:05Z`, with fractions of a second and `+hh:mm` offsets.
pub(crate) mod rfc3339 {
    use super::*;

    /// The first second humantime cannot format (year 10000).
    const LIMIT: Duration = Duration::from_secs(253_402_300_800);

    pub(crate) fn parse(s: &str) -> Result<SystemTime, TimeError> {
        let s = s.trim();
        let bad = || TimeError::Malformed {
            text: s.to_owned(),
            source: None,
        };
        let refused = |source| TimeError::Malformed {
            text: s.to_owned(),
            source: Some(source),
        };
        if let Some(base) = s.strip_suffix(['Z', 'z']) {
            return humantime::parse_rfc3339(&format!("{base}Z")).map_err(refused);
        }
        // `+hh:mm` or `-hh:mm`: humantime reads only UTC, so shift by hand.
        let split = s.len().checked_sub(6).ok_or_else(bad)?;
        let (base, offset) = (
            s.get(..split).ok_or_else(bad)?,
            s.get(split..).ok_or_else(bad)?,
        );
        let digits = |range: std::ops::Range<usize>| -> Result<u64, TimeError> {
            let part = offset.get(range).ok_or_else(bad)?;
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let east = match offset.as_bytes().first() {
            Some(b'+') => true,
            Some(b'-') => false,
            _ => return Err(bad()),
        };
        if offset.as_bytes().get(3) != Some(&b':') {
            return Err(bad());
        }
        let (hours, minutes) = (digits(1..3)?, digits(4..6)?);
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        let local = humantime::parse_rfc3339(&format!("{base}Z")).map_err(refused)?;
        let shift = Duration::from_secs(hours * 3600 + minutes * 60);
        let utc = if east {
            local.checked_sub(shift)
        } else {
            local.checked_add(shift)
        };
        match utc {
            Some(t) if t >= UNIX_EPOCH => Ok(t),
            _ => Err(TimeError::BeforeEpoch(s.to_owned())),
        }
    }

    /// Formats a time, or says why it cannot be (humantime panics outside 1970..10000).
    pub(crate) fn format(t: SystemTime) -> Result<String, TimeError> {
        match t.duration_since(UNIX_EPOCH) {
            Ok(since) if since < LIMIT => Ok(humantime::format_rfc3339(t).to_string()),
            _ => Err(TimeError::OutOfRange),
        }
    }

    pub(crate) fn serialize<Z: Serializer>(
        t: &Option<SystemTime>,
        serializer: Z,
    ) -> Result<Z::Ok, Z::Error> {
        match t {
            Some(t) => serializer.serialize_str(&format(*t).map_err(serde::ser::Error::custom)?),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => parse(&s).map(Some).map_err(de::Error::custom),
        }
    }
}

/// Step 1 for YAML: syntax, and a document that is a non-empty mapping.
fn document_from_yaml(source_name: &str, text: &str) -> Result<Value, ResourceError> {
    let syntax = |e: serde_norway::Error| {
        let (location, reason) = yaml_syntax(&e);
        ResourceError::Syntax {
            source_name: source_name.to_owned(),
            location,
            reason,
        }
    };
    let mut value: Value = serde_norway::from_str(text).map_err(syntax)?;
    value.apply_merge().map_err(syntax)?;
    check_document(source_name, value)
}

/// Step 1 for JSON: syntax, then the same value type as YAML so one pipeline follows.
fn document_from_json(source_name: &str, text: &str) -> Result<Value, ResourceError> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| json_syntax(source_name, &e))?;
    let value = serde_norway::to_value(json).map_err(|e| ResourceError::Syntax {
        source_name: source_name.to_owned(),
        location: None,
        reason: e.to_string(),
    })?;
    check_document(source_name, value)
}

/// A JSON syntax error as a [`ResourceError::Syntax`], the position moved from the
/// message into `location`.
pub(crate) fn json_syntax(source_name: &str, e: &serde_json::Error) -> ResourceError {
    ResourceError::Syntax {
        source_name: source_name.to_owned(),
        location: (e.line() > 0).then(|| Location {
            line: e.line(),
            column: e.column(),
        }),
        reason: e.to_string().replacen(
            &format!(" at line {} column {}", e.line(), e.column()),
            "",
            1,
        ),
    }
}

fn check_document(source_name: &str, value: Value) -> Result<Value, ResourceError> {
    let document = |reason: &str| ResourceError::Document {
        source_name: source_name.to_owned(),
        reason: reason.to_owned(),
    };
    match &value {
        Value::Null => Err(document(
            "the document is empty; a resource needs kind, version, metadata and spec",
        )),
        Value::Mapping(m) if m.is_empty() => Err(document(
            "the document is empty; a resource needs kind, version, metadata and spec",
        )),
        Value::Mapping(_) => Ok(value),
        _ => Err(document(
            "expected a mapping with kind, version, metadata and spec at the top level",
        )),
    }
}

/// Step 2: the document is of the expected kind, before its spec is read.
fn check_kind(
    source_name: &str,
    value: &Value,
    expected: &'static str,
) -> Result<(), ResourceError> {
    let field = |reason: String| ResourceError::Field {
        source_name: source_name.to_owned(),
        path: "kind".to_owned(),
        reason,
    };
    match value.get("kind") {
        None | Some(Value::Null) => Err(field(format!("is required; expected `{expected}`"))),
        Some(Value::String(kind)) if kind == expected => Ok(()),
        Some(Value::String(kind)) => Err(field(match suggest(kind, &[expected]) {
            Some(hint) => format!("expected `{expected}`, got `{kind}`; did you mean `{hint}`?"),
            None => {
                format!("expected `{expected}`, got `{kind}` (this document is not a {expected})")
            }
        })),
        Some(_) => Err(field(format!("expected the string `{expected}`"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn names() {
        for good in ["a", "dev", "alice@example.com", "db-admins_2.x"] {
            assert!(ResourceName::new(good).is_ok(), "{good}");
        }
        let long = "a".repeat(254);
        for (bad, why) in [
            ("", "must not be empty"),
            ("a b", "contains ' '"),
            ("a/b", "contains '/'"),
            ("ünï", "contains 'ü'"),
            (long.as_str(), "at most 253"),
        ] {
            let err = ResourceName::new(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(ResourceName::new("a".repeat(253)).is_ok());
    }

    #[test]
    fn versions() {
        assert_eq!("v7".parse::<ResourceVersion>(), Ok(ResourceVersion::V7));
        assert_eq!("V3".parse::<ResourceVersion>(), Ok(ResourceVersion::V3));
        assert_eq!(ResourceVersion::V8.to_string(), "v8");
        let err = "v9".parse::<ResourceVersion>().unwrap_err();
        assert_eq!(err, UnknownVersion("v9".to_owned()));
        assert!(err.to_string().contains("v1 to v8"), "{err}");
    }

    #[test]
    fn rfc3339_times() {
        let z = rfc3339::parse("2030-01-02T03:04:05Z").unwrap();
        assert_eq!(rfc3339::format(z).unwrap(), "2030-01-02T03:04:05Z");
        let plus = rfc3339::parse("2030-01-02T05:04:05+02:00").unwrap();
        assert_eq!(plus, z);
        let minus = rfc3339::parse("2030-01-01T23:34:05-03:30").unwrap();
        assert_eq!(minus, z);
        let frac = rfc3339::parse("2030-01-02T03:04:05.5Z").unwrap();
        assert_eq!(frac.duration_since(z).unwrap(), Duration::from_millis(500));
        for bad in [
            "",
            "tomorrow",
            "2030-01-02",
            "2030-01-02T03:04:05",
            "2030-01-02T03:04:05+2:00",
            "2030-01-02T03:04:05+24:00",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
        ] {
            assert!(rfc3339::parse(bad).is_err(), "{bad}");
        }
        let far = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(rfc3339::format(far), Err(TimeError::OutOfRange));
    }

    #[test]
    fn rfc3339_errors_say_which_case_and_keep_the_parser_reason() {
        let err = rfc3339::parse("1969-12-31T23:59:59Z").unwrap_err();
        // humantime refuses times before 1970 itself; its reason is the source.
        assert!(
            matches!(
                err,
                TimeError::Malformed {
                    source: Some(_),
                    ..
                }
            ),
            "{err:?}"
        );
        let err = rfc3339::parse("1970-01-01T00:30:00+01:00").unwrap_err();
        assert_eq!(
            err,
            TimeError::BeforeEpoch("1970-01-01T00:30:00+01:00".to_owned())
        );
        assert_eq!(
            err.to_string(),
            "\"1970-01-01T00:30:00+01:00\" is before 1970"
        );
        let err = rfc3339::parse("2030-01-02T03:04:05+2:00").unwrap_err();
        assert!(
            matches!(err, TimeError::Malformed { source: None, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("expected an RFC 3339 time such as")
        );
        let err = parse_rfc3339("2030-13-02T03:04:05Z").unwrap_err();
        let source = std::error::Error::source(&err);
        assert!(
            source.is_some_and(|s| s.downcast_ref::<humantime::TimestampError>().is_some()),
            "{err:?}"
        );
    }

    #[test]
    fn label_keys() {
        assert!(check_label_key("env", false).is_ok());
        assert!(check_label_key("teleport.dev/origin", false).is_ok());
        assert!(check_label_key("*", true).is_ok());
        assert!(check_label_key("*", false).is_err());
        assert!(check_label_key("", true).is_err());
        assert!(check_label_key("a b", true).is_err());
    }
}
