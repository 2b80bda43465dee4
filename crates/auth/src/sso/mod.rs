//! Single sign-on (docs/sso.md): logins through OIDC, SAML and GitHub connectors.
//!
//! A login has two legs, and any auth server behind the load balancer may serve either:
//! 1. `CreateSsoLogin`: auth picks the connector, makes the login's `state` (a random id),
//!    OIDC `nonce` and PKCE verifier, stores them as a [`PendingLogin`] under
//!    `/sso/logins/SHA256(state)` for [`LOGIN_TTL`], and answers with the provider's login
//!    URL.
//! 2. `FinishSsoLogin`: the provider's answer reaches the proxy's callback; auth takes the
//!    pending login by its `state` (deleting it: a state is used once), checks the answer
//!    (for OIDC: the code exchanged with the PKCE verifier, the ID token's signature,
//!    issuer, audience, expiry and nonce), maps the user's claims to roles, and writes the
//!    user as a temporary user that expires with their certificates.
//!
//! A web login ends in a web session; a `jsh login --auth` ends in certificates for jsh's
//! own keys, stored under `/sso/results/SHA256(id)` for [`RESULT_TTL`], which jsh collects
//! once with a secret only it knows (the browser, and whoever sees its history, learn only
//! the result's id).

pub mod github;
pub mod http;
pub mod oidc;
pub mod saml;

use jumpgate_types::{Resource, ResourceSpec, Traits};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a user has to finish logging in at the provider.
pub const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// How long jsh has to collect its certificates after the browser came back.
pub const RESULT_TTL: Duration = Duration::from_secs(2 * 60);
/// Longest claim value kept as a trait, and most values per claim: claims end up in
/// certificates and every proxy's memory.
const MAX_TRAIT_VALUE: usize = 1024;
const MAX_TRAIT_VALUES: usize = 256;

/// A login waiting for the provider's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingLogin {
    /// `oidc`, `saml` or `github`.
    pub kind: String,
    pub connector: String,
    /// OIDC: the ID token must carry it.
    #[serde(default)]
    pub nonce: String,
    /// OIDC and GitHub: PKCE's verifier, sent with the code.
    #[serde(default)]
    pub pkce_verifier: String,
    /// SAML: the AuthnRequest's ID, which the response must answer.
    #[serde(default)]
    pub saml_request_id: String,
    pub purpose: Purpose,
}

/// Who started the login and where it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Purpose {
    /// The web UI: a session, then this page.
    Web { redirect_path: String },
    /// jsh: certificates for these keys, collected with the secret whose SHA-256 this is,
    /// after the browser is sent to `redirect_url` (jsh's loopback listener).
    Cli {
        redirect_url: String,
        ssh_public_key: String,
        tls_public_key_pem: String,
        ttl_seconds: i64,
        secret_sha256: String,
    },
}

/// [`SsoError::Provider`] for `connector`: its provider could not be reached or answered
/// nonsense.
pub(crate) fn provider_error<S: ResourceSpec>(
    connector: &Resource<S>,
    reason: impl std::fmt::Display,
) -> SsoError {
    SsoError::Provider {
        connector: connector.name().to_owned(),
        reason: reason.to_string(),
    }
}

/// [`SsoError::Refused`] for `connector`: the provider's answer did not pass a check.
pub(crate) fn refused<S: ResourceSpec>(
    connector: &Resource<S>,
    reason: impl std::fmt::Display,
) -> SsoError {
    SsoError::Refused {
        connector: connector.name().to_owned(),
        reason: reason.to_string(),
    }
}

/// What the provider says of the user, after the connector's mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The Jumpgate user name.
    pub username: String,
    pub roles: Vec<String>,
    /// Every claim (attribute) as a trait, for role templates (`{{external.groups}}`).
    pub traits: Traits,
    /// Logins the connector grants besides the traits' (GitHub's `teams_to_logins`).
    pub logins: Vec<String>,
    /// When the provider says the login ends (SAML's `SessionNotOnOrAfter`), if it says:
    /// the user and their certificates end then, if that is before `max_session_ttl`.
    pub session_ends: Option<std::time::SystemTime>,
}

/// Why a login through a connector was refused. Each says what to fix, and where.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider of connector {connector:?} failed: {reason}")]
    Provider { connector: String, reason: String },
    /// The provider's answer did not pass a check: the login is refused.
    #[error("the login through connector {connector:?} was refused: {reason}")]
    Refused { connector: String, reason: String },
    /// The provider reported an error to the callback (the user cancelled, ...).
    #[error("the identity provider said: {0}")]
    ProviderSaid(String),
    /// The claims map to no role.
    #[error(
        "user {user:?} logged in through connector {connector:?}, but none of their claims \
         maps to a role ({claims}); ask an admin to add a mapping for one of them to the \
         connector's {field}"
    )]
    NoRoles {
        user: String,
        connector: String,
        claims: String,
        field: &'static str,
    },
}

/// Where a web login may land: a path of the web UI, nothing else (an open redirect lets
/// a phishing link borrow our name).
pub fn web_redirect_path(requested: &str) -> String {
    let safe = requested.starts_with("/web")
        && !requested.contains("//")
        && !requested.contains('\\')
        && !requested.contains("/..")
        && requested
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '<' && c != '>');
    let exact_or_below = requested == "/web"
        || requested.starts_with("/web/")
        || requested.starts_with("/web?")
        || requested.starts_with("/web#");
    if safe && exact_or_below {
        requested.to_owned()
    } else {
        "/web".to_owned()
    }
}

/// Where jsh waits for the browser: `http://` to a loopback address with a port, as tsh
/// does. Anything else would send the login's result id to another host.
pub fn client_redirect_url(requested: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(requested)
        .map_err(|err| format!("client_redirect_url {requested:?} is not a URL: {err}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if url.scheme() != "http"
        || !loopback
        || url.port().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "client_redirect_url {requested:?} must be http://127.0.0.1:PORT/... (jsh's own \
             loopback listener)"
        ));
    }
    Ok(url)
}

/// A JSON claim's values as trait values: strings as they are, numbers and booleans as
/// text, arrays flattened one level; objects are skipped (templates cannot use them).
pub fn claim_values(value: &serde_json::Value) -> Vec<String> {
    let one = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Bool(flag) => Some(flag.to_string()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    let values: Vec<String> = match value {
        serde_json::Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    };
    values
        .into_iter()
        .filter(|value| value.len() <= MAX_TRAIT_VALUE)
        .take(MAX_TRAIT_VALUES)
        .collect()
}

/// Every claim of `claims` as a trait (see [`claim_values`]).
pub fn claims_to_traits<'a>(
    claims: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
) -> Traits {
    claims
        .into_iter()
        .filter(|(name, _)| name.len() <= 128)
        .map(|(name, value)| (name.clone(), claim_values(value)))
        .filter(|(_, values)| !values.is_empty())
        .collect()
}

/// `claims` as the refusal shows them: names and values, shortened.
pub fn describe_claims(traits: &Traits, names: &[&str]) -> String {
    let shown: Vec<String> = names
        .iter()
        .map(|name| {
            let values = traits.get(*name).cloned().unwrap_or_default();
            let text = jumpgate_types::text::shorten(&values.join(", "), 200);
            format!("{name}: [{text}]")
        })
        .collect();
    shown.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_logins_land_only_on_web_ui_pages() {
        for (requested, landed) in [
            ("/web", "/web"),
            ("/web/recordings?x=1", "/web/recordings?x=1"),
            ("", "/web"),
            ("https://evil.example", "/web"),
            ("//evil.example/web", "/web"),
            ("/web//evil.example", "/web"),
            ("/web/../webapi/x", "/web"),
            ("/web\\evil", "/web"),
            ("/webhook", "/web"),
            ("/web/\"><script>", "/web"),
        ] {
            assert_eq!(web_redirect_path(requested), landed, "{requested}");
        }
    }

    #[test]
    fn jsh_waits_only_on_loopback() {
        assert!(client_redirect_url("http://127.0.0.1:41234/callback").is_ok());
        assert!(client_redirect_url("http://[::1]:41234/callback").is_ok());
        assert!(client_redirect_url("http://localhost:41234/cb").is_ok());
        for bad in [
            "http://evil.example:41234/callback",
            "https://127.0.0.1:41234/callback",
            "http://127.0.0.1/callback",
            "http://127.0.0.1.evil.example:80/x",
            "http://user@127.0.0.1:41234/",
            "javascript:alert(1)",
            "not a url",
        ] {
            assert!(client_redirect_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_become_traits() {
        let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"groups": ["a", "b", 3], "email": "x@y", "verified": true, "address": {"c": 1}}"#,
        )
        .unwrap();
        let traits = claims_to_traits(&claims);
        assert_eq!(traits["groups"], ["a", "b", "3"]);
        assert_eq!(traits["email"], ["x@y"]);
        assert_eq!(traits["verified"], ["true"]);
        assert!(!traits.contains_key("address"));
    }

    #[test]
    fn a_refusal_shortens_claims_at_characters_not_bytes() {
        // 199 ASCII bytes, then a two-byte 'é' across byte 200: a byte cut would panic.
        let group = format!("{}Développeurs", "x".repeat(198));
        let traits: Traits = [("groups".to_owned(), vec![group])].into_iter().collect();
        let shown = describe_claims(&traits, &["groups", "absent"]);
        assert!(
            shown.starts_with(&format!("groups: [{}Dé", "x".repeat(198))),
            "{shown}"
        );
        assert!(shown.ends_with("…]; absent: []"), "{shown}");
    }
}
