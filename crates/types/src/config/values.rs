//! Value types of the config (addresses, secrets) and the serde helpers that give YAML
//! scalars Teleport's lenient spellings: `yes`/`no`/`on`/`off` booleans, "a string or a list",
//! humantime durations and an empty string meaning "unset".
//!
//! Every helper reports a plain message through `serde::de::Error::custom`; the caller adds the
//! field path (from `serde_path_to_error`) and the file name.

use std::fmt;
use std::marker::PhantomData;
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::time::Duration;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// Why a config value (an address, a duration, a keyword) was refused. Its `Display` is the
/// reason that follows the field path in a [`ConfigError`](super::ConfigError); the variants
/// let a caller that parses a value itself (`"...".parse::<HostPort>()`) tell the cases apart.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Not of the form `host:port` (no port, an empty or malformed host, a port that is not
    /// digits).
    #[error("expected host:port, got {0:?}")]
    HostPort(String),
    /// An IPv6 address without brackets: `::1:3025` is ambiguous.
    #[error("expected host:port, got {0:?} (write IPv6 addresses as [addr]:port)")]
    UnbracketedIpv6(String),
    /// The port is digits but above 65535.
    #[error("expected host:port with a port up to 65535, got {text:?}")]
    PortRange {
        /// The value as written.
        text: String,
        /// Why the port did not fit a `u16`.
        #[source]
        source: std::num::ParseIntError,
    },
    /// Not a duration humantime reads.
    #[error("expected a duration such as 30s or 12h, got {text:?}")]
    Duration {
        /// The value as written.
        text: String,
        /// What humantime found wrong.
        #[source]
        source: humantime::DurationError,
    },
    /// A keyword Teleport knows that Jumpgate does not support yet (`auth_type: github`).
    #[error("{what} {text:?} is not supported yet; use {choices}")]
    UnsupportedKeyword {
        /// What the keyword chooses (`join method`).
        what: &'static str,
        /// The value as written.
        text: String,
        /// The supported spellings, comma separated.
        choices: String,
    },
    /// A keyword that is not one of the choices.
    #[error("expected one of {choices}, got {text:?}")]
    UnknownKeyword {
        /// The value as written.
        text: String,
        /// The supported spellings, comma separated.
        choices: String,
    },
    /// A config `version` of an older layout (`v1`, `v2`).
    #[error("version {0:?} is not supported; only v3 is (write `version: v3` and the v3 layout)")]
    UnsupportedVersion(String),
    /// A config `version` that is no version at all.
    #[error("expected v3, got {0:?}")]
    UnknownVersion(String),
    /// A value of the right shape that cannot be used; `reason` says why.
    #[error("invalid {what} {text:?}: {reason}")]
    Invalid {
        /// What the value is (`address list`).
        what: &'static str,
        /// The value as written.
        text: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// A network address as written in the config: `host:port`, with IPv6 hosts in brackets
/// (`[::1]:3025`). The host is kept as text (a name or an IP literal, without brackets): names are
/// resolved when the daemon dials or binds, not while parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// A DNS name or an IP literal; IPv6 without the brackets.
    pub host: String,
    /// The TCP port; 0 asks the OS for a free port when listening.
    pub port: u16,
}

impl HostPort {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

/// The addresses of one service (`proxy_server: a.example.com:443,b.example.com:443`, or a
/// list), tried in turn when dialling: a small cluster fails over between its servers with
/// neither a load balancer nor a DNS change. Never empty; no address twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddrs(Vec<HostPort>);

impl ServerAddrs {
    /// The addresses, in the order given.
    pub fn addrs(&self) -> &[HostPort] {
        &self.0
    }

    /// The first address given.
    pub fn first(&self) -> &HostPort {
        // Never empty: built only by `from_str` and `From<HostPort>`.
        #[allow(clippy::indexing_slicing)]
        &self.0[0]
    }
}

impl From<HostPort> for ServerAddrs {
    fn from(addr: HostPort) -> Self {
        ServerAddrs(vec![addr])
    }
}

/// `a:443,b:443`: the form `jumpgate_api::client::dial` takes.
impl fmt::Display for ServerAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

impl FromStr for ServerAddrs {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let mut addrs: Vec<HostPort> = Vec::new();
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(ValueError::Invalid {
                    what: "address list",
                    text: s.to_string(),
                    reason: "an empty entry; separate host:port addresses with single commas"
                        .to_string(),
                });
            }
            let addr: HostPort = part.parse()?;
            if addr.port == 0 {
                return Err(ValueError::Invalid {
                    what: "address",
                    text: part.to_string(),
                    reason: "port 0 cannot be dialled; give the server's port".to_string(),
                });
            }
            if addrs.contains(&addr) {
                return Err(ValueError::Invalid {
                    what: "address list",
                    text: s.to_string(),
                    reason: format!("{addr} is listed twice"),
                });
            }
            addrs.push(addr);
        }
        Ok(ServerAddrs(addrs))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for HostPort {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::HostPort(s.to_owned());
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            // Bracketed IPv6 literal: the only form in which a host may contain ':'.
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            host.parse::<Ipv6Addr>().map_err(|_| bad())?;
            (host, port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
            if host.contains(':') {
                // "::1:3025" is ambiguous; say how to write it.
                return Err(ValueError::UnbracketedIpv6(s.to_owned()));
            }
            (host, port)
        };
        let host_ok = !host.is_empty()
            && !host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/[]@?#".contains(c));
        if !host_ok {
            return Err(bad());
        }
        // u16::from_str accepts a leading '+'; a port is digits only.
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let port = port
            .parse::<u16>()
            .map_err(|source| ValueError::PortRange {
                text: s.to_owned(),
                source,
            })?;
        Ok(Self::new(host, port))
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d)
    }
}

/// A secret from the config (a join token). `Debug` and `Display` print `[redacted]` so that a
/// config can be logged whole without leaking it (DESIGN.md: no secret is ever logged); read the
/// value with [`Secret::expose`] where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call it only where the value is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Any scalar: a token that happens to be all digits is still a token, and a type
        // error would echo it.
        let ScalarString(value) = ScalarString::deserialize(d)?;
        if value.trim().is_empty() {
            return Err(de::Error::custom("must not be empty"));
        }
        Ok(Self(value))
    }
}

/// Parses a duration such as `30s`, `12h` or `1h30m` (Teleport writes `1m0s`): the one
/// duration syntax of the config, `jctl` and `jsh`.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    humantime::parse_duration(s.trim()).map_err(|source| ValueError::Duration {
        text: s.to_owned(),
        source,
    })
}

/// `deserialize_with` for a [`Duration`] field.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 30s or 12h")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V)
}

/// Deserializes a string scalar through `T`'s [`FromStr`], whose error text becomes the reason.
pub(crate) fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct V<T>(PhantomData<T>);
    impl<T> Visitor<'_> for V<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(V(PhantomData))
}

/// A boolean as Teleport writes it: `true`/`false`, or the strings `yes`/`no`, `on`/`off`
/// (YAML 1.2, which our parser follows, reads those as strings, and Teleport quotes them anyway:
/// `enabled: "yes"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlexBool(pub bool);

impl<'de> Deserialize<'de> for FlexBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FlexBool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("yes/no, on/off or true/false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<FlexBool, E> {
                Ok(FlexBool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FlexBool, E> {
                match v.to_ascii_lowercase().as_str() {
                    "yes" | "on" | "true" => Ok(FlexBool(true)),
                    "no" | "off" | "false" => Ok(FlexBool(false)),
                    _ => Err(E::custom(format_args!(
                        "expected yes/no, on/off or true/false, got {v:?}"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// "A string or a list": Teleport accepts `public_addr: a:443` as well as a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let one = T::deserialize(v.into_deserializer())?;
                Ok(OneOrMany(vec![one]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                // Going through `Vec`'s own impl keeps the `[index]` in error paths.
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A scalar read as text: label values are strings, but `rack: 12` or `gpu: true` are natural
/// to write and have one obvious meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScalarString(pub String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ScalarString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `deserialize_with` for an optional value where an empty string means "unset"
/// (`teleport configure` writes `diag_addr: ""`).
pub(crate) fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = Option::<String>::deserialize(d)?;
    match text {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(de::Error::custom),
    }
}

/// `deserialize_with` for `proxy_server` / `auth_server`: one address, several separated by
/// commas, or a list; empty means unset.
pub(crate) fn servers_or_none<'de, D>(d: D) -> Result<Option<ServerAddrs>, D::Error>
where
    D: Deserializer<'de>,
{
    let Some(OneOrMany(texts)) = Option::<OneOrMany<String>>::deserialize(d)? else {
        return Ok(None);
    };
    let joined = texts
        .iter()
        .map(|text| text.trim())
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    if joined.is_empty() {
        return Ok(None);
    }
    joined.parse().map(Some).map_err(de::Error::custom)
}

/// `deserialize_with` for a service section: a key that is present counts even with an empty
/// value (`ssh_service:` alone), because presence is what enables a service.
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// Either a keyword (`format: json`) or a mapping (`format: {output: json, ...}`), parsed by
/// the caller-given types. Used where Teleport accepts both shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WordOrMap<W, M> {
    Word(W),
    Map(M),
}

impl<'de, W, M> Deserialize<'de> for WordOrMap<W, M>
where
    W: FromStr,
    W::Err: fmt::Display,
    M: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<W, M>(PhantomData<(W, M)>);
        impl<'de, W, M> Visitor<'de> for V<W, M>
        where
            W: FromStr,
            W::Err: fmt::Display,
            M: Deserialize<'de>,
        {
            type Value = WordOrMap<W, M>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map(WordOrMap::Word).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                // Through `M`'s own impl, so `deny_unknown_fields` and error paths still apply.
                M::deserialize(MapAccessDeserializer::new(map)).map(WordOrMap::Map)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Implements `as_str`, `Display`, case-insensitive `FromStr` and `Deserialize` for a keyword
/// enum. Each variant lists its spellings, the canonical one first. Keywords that Teleport knows
/// but Jumpgate does not support yet go in `unsupported`, so that they get a clearer message
/// than "unknown".
macro_rules! keyword_enum {
    (
        $ty:ident, $what:literal,
        { $($variant:ident => [$first:literal $(, $alias:literal)*]),+ $(,)? }
        $(, unsupported: [$($unsup:literal),+ $(,)?])?
    ) => {
        impl $ty {
            /// The canonical spelling in a config file.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $first,)+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::config::ValueError;

            fn from_str(s: &str) -> Result<Self, $crate::config::ValueError> {
                let choices = [$($first),+].join(", ");
                match s.to_ascii_lowercase().as_str() {
                    $($first $(| $alias)* => Ok(Self::$variant),)+
                    $($($unsup)|+ => Err($crate::config::ValueError::UnsupportedKeyword {
                        what: $what,
                        text: s.to_owned(),
                        choices,
                    }),)?
                    _ => Err($crate::config::ValueError::UnknownKeyword {
                        text: s.to_owned(),
                        choices,
                    }),
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::config::values::from_str(d)
            }
        }
    };
}
pub(crate) use keyword_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_and_prints() {
        let cases = [
            ("example.com:443", "example.com", 443, "example.com:443"),
            ("0.0.0.0:3025", "0.0.0.0", 3025, "0.0.0.0:3025"),
            ("[::1]:3025", "::1", 3025, "[::1]:3025"),
            ("127.0.0.1:0", "127.0.0.1", 0, "127.0.0.1:0"),
        ];
        for (input, host, port, shown) in cases {
            let hp: HostPort = input.parse().unwrap();
            assert_eq!((hp.host.as_str(), hp.port), (host, port), "{input}");
            assert_eq!(hp.to_string(), shown);
        }
    }

    #[test]
    fn host_port_rejects_malformed() {
        for bad in [
            "nope",
            ":3025",
            "host:",
            "host:port",
            "host:70000",
            "host:+1",
            "::1:3025",
            "[::1]3025",
            "[nothost]:1",
            "a b:1",
            "http://x:1",
            "",
        ] {
            let err = bad.parse::<HostPort>().unwrap_err().to_string();
            assert!(err.starts_with("expected host:port"), "{bad}: {err}");
        }
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1m0s").unwrap(), Duration::from_secs(60));
        let err = parse_duration("soon").unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected a duration such as 30s or 12h, got \"soon\""
        );
        // humantime's own reason is kept as the source, for logs that print the chain.
        let source = std::error::Error::source(&err);
        assert!(
            source.is_some_and(|s| s.downcast_ref::<humantime::DurationError>().is_some()),
            "{source:?}"
        );
    }

    #[test]
    fn host_port_errors_are_variants() {
        assert_eq!(
            "::1:3025".parse::<HostPort>(),
            Err(ValueError::UnbracketedIpv6("::1:3025".to_owned()))
        );
        assert_eq!(
            "nope".parse::<HostPort>(),
            Err(ValueError::HostPort("nope".to_owned()))
        );
        let err = "host:70000".parse::<HostPort>().unwrap_err();
        assert!(matches!(err, ValueError::PortRange { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "expected host:port with a port up to 65535, got \"host:70000\""
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
