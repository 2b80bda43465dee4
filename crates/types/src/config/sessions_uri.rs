//! `jumpgate.storage.audit_sessions_uri`: where auth keeps session recordings, in Teleport's
//! URI forms.
//!
//! - `file:///var/lib/jumpgate/log/records`: files in that directory (the default is
//!   `DATA_DIR/log/sessions`).
//! - `s3://bucket/optional/prefix?region=us-east-1&endpoint=http://minio:9000&...`: an
//!   S3-compatible bucket shared by every auth server. Query parameters (Teleport's names):
//!   `region`, `endpoint` (a custom S3-compatible server; path-style requests then, unless
//!   `use_s3_virtual_style_addressing=true`), `insecure` (`http://` for an endpoint given
//!   without a scheme), `use_fips_endpoint`, `sse` (`AES256`, `aws:kms`, `aws:kms:dsse`),
//!   `sse_kms_key` (implies `aws:kms`), `disablesse`, `acl` (a canned ACL). Anything else is
//!   refused, naming it.
//!
//! - `postgresql://USER[:PASSWORD]@HOST[:PORT][,HOST2[:PORT]]/DATABASE?...` (or
//!   `postgres://`): a PostgreSQL database shared by every auth server, the same forms as a
//!   `postgresql://` `audit_events_uri` (several hosts with
//!   `target_session_attrs=read-write`, libpq's TLS parameters). Its shape is checked here;
//!   the parameters and the TLS files when the daemon starts, before any socket is bound.
//!   It may hold a password: [`SessionsUri`]'s `Display` and `Debug` never show one.
//!
//! S3 credentials are never part of the URI: auth uses the standard AWS chain.

use std::fmt;
use std::path::PathBuf;

use super::error::suggest;

/// A parsed `audit_sessions_uri`. Its `Display` and `Debug` leave out a PostgreSQL
/// password; [`SessionsUri::as_str`] does not.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionsUri {
    uri: String,
    store: SessionsStore,
}

/// Which recording store a [`SessionsUri`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionsStore {
    /// `file://DIR`: files in an absolute directory.
    File { dir: PathBuf },
    /// `s3://BUCKET/PREFIX?...`.
    S3(S3Sessions),
    /// `postgresql://...`: the connection string is [`SessionsUri::as_str`].
    Postgres,
}

/// An `s3://` recording store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct S3Sessions {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    /// `None`: from the AWS chain (`AWS_REGION`, the profile), else `us-east-1`.
    pub region: Option<String>,
    /// A custom endpoint URL with its scheme.
    pub endpoint: Option<String>,
    /// Path-style requests: the default with a custom endpoint (as Teleport does).
    pub path_style: bool,
    pub use_fips_endpoint: bool,
    /// Server-side encryption to ask for on every write; `None`: the bucket's default.
    pub sse: Option<String>,
    pub sse_kms_key: Option<String>,
    pub acl: Option<String>,
}

/// The query parameters an `s3://` URI may carry.
pub const S3_PARAMETERS: &[&str] = &[
    "region",
    "endpoint",
    "insecure",
    "use_fips_endpoint",
    "use_s3_virtual_style_addressing",
    "sse",
    "sse_kms_key",
    "disablesse",
    "acl",
];

const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

const SSE_ALGORITHMS: &[&str] = &["AES256", "aws:kms", "aws:kms:dsse"];

impl SessionsUri {
    /// Parses and checks a URI; the error says what is wrong and how to write it.
    pub fn parse(uri: &str) -> Result<SessionsUri, String> {
        let store = match uri.split_once("://") {
            Some(("file", path)) => parse_file(path)?,
            Some(("s3", rest)) => SessionsStore::S3(parse_s3(rest)?),
            Some(("postgresql" | "postgres", rest)) => {
                check_postgres(rest)?;
                SessionsStore::Postgres
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "unsupported scheme {:?} for session recordings: use {EXAMPLES}",
                    redact_scheme(scheme)
                ));
            }
            None => {
                return Err(format!(
                    "expected a URI such as {EXAMPLES}, got {:?}",
                    redact_scheme(uri)
                ));
            }
        };
        Ok(SessionsUri {
            uri: uri.to_string(),
            store,
        })
    }

    /// The URI as written; a `postgresql://` one may hold a password: never print it.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    pub fn store(&self) -> &SessionsStore {
        &self.store
    }
}

/// Shows the URI, a PostgreSQL one without its password and query (which may carry
/// `password=`): `postgresql://jumpgate@db1:5432,db2:5432/jumpgate`.
impl fmt::Display for SessionsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.store {
            SessionsStore::Postgres => f.write_str(&redact_postgres(&self.uri)),
            SessionsStore::File { .. } | SessionsStore::S3(_) => f.write_str(&self.uri),
        }
    }
}

impl fmt::Debug for SessionsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionsUri")
            .field("uri", &self.to_string())
            .field("store", &self.store)
            .finish()
    }
}

const EXAMPLES: &str = "file:///var/lib/jumpgate/log/records, s3://bucket/prefix?region=us-east-1 \
     or postgresql://jumpgate@db1:5432,db2:5432/jumpgate?target_session_attrs=read-write";

/// A scheme (or a whole string without one) for an error message: at most its first 32
/// characters, in case a password was written where the scheme should be.
fn redact_scheme(text: &str) -> String {
    if text.contains('@') {
        return "[a string with '@', not shown]".to_string();
    }
    text.chars().take(32).collect()
}

/// `scheme://user@hosts/db`: no password, no query.
fn redact_postgres(uri: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap_or(("postgresql", uri));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}@{hosts}")
        }
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

/// The shape of a `postgresql://` URI: hosts with numeric ports, an optional database,
/// no fragment. The parameters (and the TLS files they name) are checked at start by the
/// driver's own parser; messages never repeat the password.
fn check_postgres(rest: &str) -> Result<(), String> {
    const FORM: &str =
        "write postgresql://USER[:PASSWORD]@HOST[:PORT][,HOST2[:PORT]]/DATABASE[?PARAMETERS]";
    if rest.contains('#') {
        return Err(format!(
            "a '#' fragment is not allowed in a postgresql:// URI (a '#' in the password must \
             be written %23); {FORM}"
        ));
    }
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = location.split_once('/').unwrap_or((location, ""));
    let hosts = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            if userinfo.split(':').next().unwrap_or_default().is_empty() {
                return Err(format!("the user name before '@' is empty; {FORM}"));
            }
            hosts
        }
        None => authority,
    };
    if hosts.is_empty() {
        return Err(format!("the postgresql:// URI names no host; {FORM}"));
    }
    for host in hosts.split(',') {
        let (name, port) = match host.strip_prefix('[') {
            // [IPv6]:port
            Some(v6) => match v6.split_once(']') {
                Some((addr, rest)) => (addr, rest.strip_prefix(':')),
                None => return Err(format!("unclosed '[' in host {host:?}; {FORM}")),
            },
            None => match host.split_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            },
        };
        if name.is_empty() {
            return Err(format!("an empty host in {hosts:?}; {FORM}"));
        }
        if let Some(port) = port
            && !port.is_empty()
            && !port.parse::<u16>().is_ok_and(|p| p != 0)
        {
            return Err(format!(
                "the port of host {name:?} must be a number from 1 to 65535, got {port:?}; {FORM}"
            ));
        }
    }
    if database.contains('/') {
        return Err(format!("the database name {database:?} has a '/'; {FORM}"));
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, _) = pair.split_once('=').unwrap_or((pair, ""));
        if key.is_empty() {
            return Err(format!("a query parameter without a name; {FORM}"));
        }
    }
    Ok(())
}

fn parse_file(path: &str) -> Result<SessionsStore, String> {
    if !path.starts_with('/') || path.contains('?') {
        return Err(format!(
            "expected an absolute directory, as in file:///var/lib/jumpgate/log/records, got \
             file://{path}"
        ));
    }
    Ok(SessionsStore::File {
        dir: PathBuf::from(path),
    })
}

fn parse_s3(rest: &str) -> Result<S3Sessions, String> {
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    check_bucket(bucket)?;
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|segment| segment == "." || segment == "..")
        || prefix.contains("//")
    {
        return Err(format!(
            "the key prefix {prefix:?} has an empty, `.` or `..` segment; write it as \
             s3://{bucket}/path/to/recordings"
        ));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key)?;
        let value = decode(value)?;
        if params.iter().any(|(k, _)| *k == key) {
            return Err(format!("query parameter `{key}` is given twice"));
        }
        params.push((key, value));
    }
    let unknown: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !S3_PARAMETERS.contains(k))
        .collect();
    if !unknown.is_empty() {
        let hints: Vec<String> = unknown
            .iter()
            .map(|k| match suggest(k, S3_PARAMETERS) {
                Some(known) => format!("`{k}` (did you mean `{known}`?)"),
                None => format!("`{k}`"),
            })
            .collect();
        return Err(format!(
            "unknown query parameter{} {} in the s3:// URI; known: {}",
            if unknown.len() > 1 { "s" } else { "" },
            hints.join(", "),
            S3_PARAMETERS.join(", ")
        ));
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let flag = |name: &str| -> Result<bool, String> {
        match get(name) {
            None => Ok(false),
            Some(value) => parse_bool(value).ok_or_else(|| {
                format!("query parameter `{name}` must be true or false, got {value:?}")
            }),
        }
    };
    let non_empty = |name: &str| -> Result<Option<String>, String> {
        match get(name) {
            None => Ok(None),
            Some("") => Err(format!("query parameter `{name}` is empty")),
            Some(value) => Ok(Some(value.to_string())),
        }
    };

    let region = non_empty("region")?;
    if let Some(region) = &region
        && !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "query parameter `region` must be a region name such as us-east-1, got {region:?}"
        ));
    }
    let insecure = flag("insecure")?;
    let endpoint = match non_empty("endpoint")? {
        None => None,
        Some(endpoint) => Some(check_endpoint(&endpoint, insecure)?),
    };
    let virtual_style = flag("use_s3_virtual_style_addressing")?;
    let disable_sse = flag("disablesse")?;
    let mut sse = non_empty("sse")?;
    if let Some(algorithm) = &sse
        && !SSE_ALGORITHMS.contains(&algorithm.as_str())
    {
        return Err(format!(
            "query parameter `sse` must be one of {}, got {algorithm:?}",
            SSE_ALGORITHMS.join(", ")
        ));
    }
    let sse_kms_key = non_empty("sse_kms_key")?;
    if sse_kms_key.is_some() {
        match sse.as_deref() {
            None => sse = Some("aws:kms".to_string()),
            Some("aws:kms" | "aws:kms:dsse") => {}
            Some(other) => {
                return Err(format!(
                    "query parameter `sse_kms_key` needs sse=aws:kms (or aws:kms:dsse), not \
                     sse={other}"
                ));
            }
        }
    }
    if disable_sse && sse.is_some() {
        return Err(
            "query parameters `disablesse=true` and `sse`/`sse_kms_key` contradict each other; \
             keep one"
                .to_string(),
        );
    }
    let acl = non_empty("acl")?;
    if let Some(acl) = &acl
        && !CANNED_ACLS.contains(&acl.as_str())
    {
        return Err(format!(
            "query parameter `acl` must be a canned ACL ({}), got {acl:?}",
            CANNED_ACLS.join(", ")
        ));
    }
    Ok(S3Sessions {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        region,
        path_style: endpoint.is_some() && !virtual_style,
        endpoint,
        use_fips_endpoint: flag("use_fips_endpoint")?,
        sse,
        sse_kms_key,
        acl,
    })
}

/// S3's bucket naming rules (general purpose buckets).
fn check_bucket(bucket: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid S3 bucket name {bucket:?}: {why}; write s3://BUCKET/optional/prefix"
        ))
    };
    if bucket.is_empty() {
        return bad("it is empty");
    }
    if !(3..=63).contains(&bucket.len()) {
        return bad("a bucket name is 3 to 63 characters long");
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return bad("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(bucket.chars().next()) || !edge_ok(bucket.chars().last()) {
        return bad("it must begin and end with a letter or digit");
    }
    if bucket.contains("..") {
        return bad("it must not contain two adjacent periods");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("it must not look like an IP address");
    }
    if bucket.starts_with("xn--") || bucket.starts_with("sthree-") {
        return bad("the prefixes xn-- and sthree- are reserved");
    }
    if bucket.ends_with("-s3alias") || bucket.ends_with("--ol-s3") {
        return bad("the suffixes -s3alias and --ol-s3 are reserved");
    }
    Ok(())
}

fn check_endpoint(endpoint: &str, insecure: bool) -> Result<String, String> {
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else if insecure {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    };
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err(format!(
            "query parameter `endpoint` must be an http:// or https:// URL, got {endpoint:?}"
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || host.chars().any(char::is_whitespace) {
        return Err(format!(
            "query parameter `endpoint` must name a host, as in http://minio.example.com:9000, \
             got {endpoint:?}"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Go's `strconv.ParseBool`, which Teleport's URIs use.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Percent-decoding of a query component (`+` stays a plus: KMS key ARNs have none).
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(format!("bad percent-escape in {text:?}"));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}
