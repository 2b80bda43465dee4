//! Single sign-on connectors, in Teleport's shape (`kind: oidc`, `kind: saml`, `kind: github`),
//! so an organisation's Teleport connector files work as written:
//!
//! ```yaml
//! kind: oidc
//! version: v3
//! metadata: {name: okta}
//! spec:
//!   issuer_url: https://example.okta.com
//!   client_id: 0oa1b2c3
//!   client_secret: s3cr3t
//!   redirect_url: https://jumpgate.example.com/v1/webapi/oidc/callback
//!   display: Okta
//!   scope: [groups]
//!   claims_to_roles:
//!     - {claim: groups, value: admins, roles: [access, editor]}
//!     - {claim: groups, value: "^env-(.*)$", roles: ["$1-access"]}
//! ```
//!
//! An SSO user is never created by hand: at each login auth reads who they are from the
//! identity provider, maps claims (attributes, teams) to roles with [`mapping`]'s rules,
//! and keeps them as a temporary user that expires with their certificates. A connector's
//! secrets (`client_secret`) stay in auth: proxies see only [`ConnectorSummary`].

pub mod mapping;

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::resource::{Resource, ResourceSpec, ResourceVersion};
use crate::role::DEFAULT_MAX_SESSION_TTL;
pub use mapping::{ClaimMapping, ValuePattern, roles_from_claims};

/// An OIDC connector (Okta, Google Workspace, Keycloak, Entra ID, ...).
pub type OidcConnector = Resource<OidcConnectorSpec>;
/// A SAML 2.0 connector.
pub type SamlConnector = Resource<SamlConnectorSpec>;
/// A GitHub (or GitHub Enterprise Server) OAuth app.
pub type GithubConnector = Resource<GithubConnectorSpec>;

/// Which protocol a connector speaks; also its resource kind and the path segment of its
/// web endpoints (`/v1/webapi/oidc/callback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnectorKind {
    Oidc,
    Saml,
    Github,
}

impl ConnectorKind {
    /// Every kind, in the order the login page lists them.
    pub const ALL: [ConnectorKind; 3] = [Self::Oidc, Self::Saml, Self::Github];

    /// As written in documents and URLs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Saml => "saml",
            Self::Github => "github",
        }
    }

    /// The kind written `text`, if it is one.
    pub fn parse(text: &str) -> Option<ConnectorKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the login page and `jsh login` may know of a connector: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorSummary {
    pub kind: String,
    pub name: String,
    /// The button's text.
    pub display: String,
}

/// `spec` of `kind: oidc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConnectorSpec {
    /// The provider's issuer; its discovery document is at
    /// `ISSUER/.well-known/openid-configuration`. HTTPS, or HTTP on a loopback address only.
    #[serde(deserialize_with = "web_url")]
    pub issuer_url: String,
    pub client_id: String,
    /// Kept by auth; never sent to proxies and shown by `jctl get` only with `--with-secrets`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
    /// Where the provider sends the browser back: `https://PROXY/v1/webapi/oidc/callback`.
    /// Teleport allows a list; the first is used.
    #[serde(deserialize_with = "one_or_more_urls")]
    pub redirect_url: Vec<String>,
    /// The login button's text; default the connector's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display: String,
    /// Scopes asked for besides `openid` (`email`, `groups`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// `prompt` sent to the provider (`select_account`, `login`, `none`); default none sent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// `acr_values` sent to the provider.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub acr_values: String,
    /// Teleport's provider hint (`okta`, `ping`, `adfs`, ...): accepted, changes nothing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// The claim naming the user; default `email`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username_claim: String,
    /// Accept an `email` claim whose `email_verified` is false (default: refused when the
    /// user name comes from the e-mail).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unverified_email: bool,
    /// How claims give roles; a login whose claims map to no role is refused.
    pub claims_to_roles: Vec<ClaimMapping>,
    /// Jumpgate: the longest certificate (and so SSO user) this connector issues, default
    /// 12h; roles may shorten it. It bounds how long a user removed at the provider keeps
    /// access.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration"
    )]
    pub max_session_ttl: Option<Duration>,
}

impl ResourceSpec for OidcConnectorSpec {
    const KIND: &'static str = "oidc";
    const VERSION: ResourceVersion = ResourceVersion::V3;
}

/// `spec` of `kind: saml` (Teleport's v2 fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlConnectorSpec {
    /// The assertion consumer service: `https://PROXY/v1/webapi/saml/acs/NAME`.
    #[serde(deserialize_with = "web_url")]
    pub acs: String,
    /// The IdP's metadata, inline (XML).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entity_descriptor: String,
    /// Or where to fetch it (HTTPS, or HTTP on a loopback address only); read at each
    /// login, so the IdP's rotated certificates are picked up at once.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "web_url"
    )]
    pub entity_descriptor_url: String,
    /// Teleport's third form, without metadata: the IdP's entity ID, its HTTP-Redirect
    /// single sign-on URL and its signing certificate (PEM), all three.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "web_url"
    )]
    pub sso: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert: String,
    /// The SP entity ID the IdP knows us by (the audience); default the `acs` URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_provider_issuer: String,
    /// The audience assertions must name; default `service_provider_issuer`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub audience: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// How attributes give roles (`name` is the attribute).
    pub attributes_to_roles: Vec<ClaimMapping>,
    /// Teleport's key pair for signing AuthnRequests. Accepted so Teleport's connector
    /// files work; Jumpgate sends its requests unsigned (see `jumpgate-saml`), so the key
    /// is unused. Its private key is a secret all the same: `jctl get saml` hides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_pair: Option<SamlKeyPair>,
    /// Teleport's key pair for encrypted assertions. Accepted, unused (Jumpgate asks for
    /// plain assertions, carried over TLS), hidden like `signing_key_pair`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_key_pair: Option<SamlKeyPair>,
    /// Accept logins the IdP starts (no AuthnRequest of ours): default refused, since they
    /// cannot be tied to a browser that asked to log in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_idp_initiated: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration"
    )]
    pub max_session_ttl: Option<Duration>,
}

/// A private key and its certificate, PEM (Teleport's `signing_key_pair`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlKeyPair {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert: String,
}

impl SamlConnectorSpec {
    /// The SP's entity ID: `service_provider_issuer`, or the `acs` URL (Teleport's default).
    pub fn entity_id(&self) -> &str {
        if self.service_provider_issuer.is_empty() {
            &self.acs
        } else {
            &self.service_provider_issuer
        }
    }

    /// The audience assertions must name: `audience`, or the entity ID.
    pub fn expected_audience(&self) -> &str {
        if self.audience.is_empty() {
            self.entity_id()
        } else {
            &self.audience
        }
    }
}

impl ResourceSpec for SamlConnectorSpec {
    const KIND: &'static str = "saml";
    const VERSION: ResourceVersion = ResourceVersion::V2;
}

/// `spec` of `kind: github`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConnectorSpec {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
    /// `https://PROXY/v1/webapi/github/callback`.
    #[serde(deserialize_with = "web_url")]
    pub redirect_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display: String,
    /// GitHub Enterprise Server: `https://github.example.com`; default `https://github.com`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "web_url"
    )]
    pub endpoint_url: String,
    /// Its API: `https://github.example.com/api/v3`; default `https://api.github.com`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "web_url"
    )]
    pub api_endpoint_url: String,
    /// Team membership to roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams_to_roles: Vec<TeamMapping>,
    /// Teleport's older form: team membership to roles. As in Teleport, an entry's `logins`
    /// are *role names* (the field's name is historical); Jumpgate also reads `roles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams_to_logins: Vec<TeamLogins>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration"
    )]
    pub max_session_ttl: Option<Duration>,
}

impl ResourceSpec for GithubConnectorSpec {
    const KIND: &'static str = "github";
    const VERSION: ResourceVersion = ResourceVersion::V3;
}

/// Members of `organization`'s team `team` (a slug; a glob or `^regexp$` as in
/// [`mapping`]) get `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamMapping {
    pub organization: String,
    pub team: ValuePattern,
    pub roles: Vec<String>,
}

/// Members of `organization`'s `team` get the roles named in `logins` (Teleport's meaning:
/// `teams_to_logins` predates `teams_to_roles`, and its `logins` are roles) and in `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamLogins {
    pub organization: String,
    pub team: ValuePattern,
    #[serde(default)]
    pub logins: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A user's GitHub teams: `(organization, team slug)`.
pub type GithubTeams = [(String, String)];

impl GithubConnectorSpec {
    /// The roles and extra logins a member of `teams` gets. No mapping gives logins (as in
    /// Teleport, where `teams_to_logins` gives roles): logins come from roles' templates,
    /// e.g. `{{internal.logins}}`, the GitHub user name.
    pub fn roles_and_logins(&self, teams: &GithubTeams) -> (Vec<String>, Vec<String>) {
        let mut roles = std::collections::BTreeSet::new();
        let logins = std::collections::BTreeSet::new();
        for mapping in &self.teams_to_roles {
            for slug in member_of(teams, &mapping.organization, &mapping.team) {
                for role in &mapping.roles {
                    if let Some(role) = mapping.team.expand(slug, role)
                        && !role.trim().is_empty()
                    {
                        roles.insert(role.trim().to_owned());
                    }
                }
            }
        }
        for mapping in &self.teams_to_logins {
            if member_of(teams, &mapping.organization, &mapping.team)
                .next()
                .is_some()
            {
                roles.extend(mapping.logins.iter().map(|role| role.trim().to_owned()));
                roles.extend(mapping.roles.iter().map(|role| role.trim().to_owned()));
                roles.retain(|role: &String| !role.is_empty());
            }
        }
        (roles.into_iter().collect(), logins.into_iter().collect())
    }

    /// `endpoint_url`, or github.com.
    pub fn endpoint(&self) -> &str {
        if self.endpoint_url.is_empty() {
            "https://github.com"
        } else {
            self.endpoint_url.trim_end_matches('/')
        }
    }

    /// `api_endpoint_url`, or api.github.com.
    pub fn api_endpoint(&self) -> &str {
        if self.api_endpoint_url.is_empty() {
            "https://api.github.com"
        } else {
            self.api_endpoint_url.trim_end_matches('/')
        }
    }
}

/// The slugs of `organization`'s teams in `teams` that `team` matches.
fn member_of<'a>(
    teams: &'a GithubTeams,
    organization: &'a str,
    team: &'a ValuePattern,
) -> impl Iterator<Item = &'a String> + 'a {
    teams
        .iter()
        .filter(move |(org, slug)| org.eq_ignore_ascii_case(organization) && team.matches(slug))
        .map(|(_, slug)| slug)
}

/// The parts every connector has, whatever its kind.
pub trait ConnectorSpec {
    /// Its kind.
    const CONNECTOR_KIND: ConnectorKind;
    /// The login button's text, when set.
    fn display(&self) -> &str;
    /// The longest session it issues ([`DEFAULT_MAX_SESSION_TTL`] unless set).
    fn max_session_ttl(&self) -> Duration;
    /// Empties its secrets, for showing it without `--with-secrets`.
    fn redact(&mut self);
}

impl ConnectorSpec for OidcConnectorSpec {
    const CONNECTOR_KIND: ConnectorKind = ConnectorKind::Oidc;
    fn display(&self) -> &str {
        &self.display
    }
    fn max_session_ttl(&self) -> Duration {
        self.max_session_ttl.unwrap_or(DEFAULT_MAX_SESSION_TTL)
    }
    fn redact(&mut self) {
        self.client_secret.clear();
    }
}

impl ConnectorSpec for SamlConnectorSpec {
    const CONNECTOR_KIND: ConnectorKind = ConnectorKind::Saml;
    fn display(&self) -> &str {
        &self.display
    }
    fn max_session_ttl(&self) -> Duration {
        self.max_session_ttl.unwrap_or(DEFAULT_MAX_SESSION_TTL)
    }
    fn redact(&mut self) {
        for pair in [&mut self.signing_key_pair, &mut self.assertion_key_pair]
            .into_iter()
            .flatten()
        {
            pair.private_key.clear();
        }
    }
}

impl ConnectorSpec for GithubConnectorSpec {
    const CONNECTOR_KIND: ConnectorKind = ConnectorKind::Github;
    fn display(&self) -> &str {
        &self.display
    }
    fn max_session_ttl(&self) -> Duration {
        self.max_session_ttl.unwrap_or(DEFAULT_MAX_SESSION_TTL)
    }
    fn redact(&mut self) {
        self.client_secret.clear();
    }
}

impl<S: ConnectorSpec + ResourceSpec> Resource<S> {
    /// What the login page shows of it.
    pub fn summary(&self) -> ConnectorSummary {
        let display = if self.spec.display().is_empty() {
            self.name()
        } else {
            self.spec.display()
        };
        ConnectorSummary {
            kind: S::CONNECTOR_KIND.as_str().to_owned(),
            name: self.name().to_owned(),
            display: display.to_owned(),
        }
    }
}

/// Whether `url` may be used to reach an identity provider or be sent back to: `https://`,
/// or `http://` to a loopback address (a provider on the same host, as in tests).
pub fn is_acceptable_web_url(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("https://") {
        return !host_of(rest).is_empty();
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = host_of(rest);
        return host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
    }
    false
}

/// The host of `authority/path` without the port.
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        // User info in a provider URL is a mistake at best; refuse by finding no host.
        return "";
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

fn web_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = String::deserialize(d)?;
    let url = url.trim().to_owned();
    if url.is_empty() || is_acceptable_web_url(&url) {
        Ok(url)
    } else {
        Err(de::Error::custom(format_args!(
            "{url:?} must be an https:// URL (http:// only to a loopback address)"
        )))
    }
}

fn one_or_more_urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let urls = crate::config::values::OneOrMany::<String>::deserialize(d)?.0;
    if urls.is_empty() {
        return Err(de::Error::custom("expected at least one URL"));
    }
    for url in &urls {
        if !is_acceptable_web_url(url) {
            return Err(de::Error::custom(format_args!(
                "{url:?} must be an https:// URL (http:// only to a loopback address)"
            )));
        }
    }
    Ok(urls)
}

mod optional_duration {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => s.serialize_str(
                &humantime::format_duration(*duration)
                    .to_string()
                    .replace(' ', ""),
            ),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        let duration =
            crate::config::values::parse_duration(text.trim()).map_err(de::Error::custom)?;
        if duration < Duration::from_secs(60) {
            return Err(de::Error::custom(format_args!(
                "{text:?} is shorter than a minute; a session must last long enough to use"
            )));
        }
        Ok(Some(duration))
    }
}

#[cfg(test)]
mod tests;
