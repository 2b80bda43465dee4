//! Login (DESIGN.md "Flows": login): fresh keys made here, the password and one-time
//! code to the proxy's web API, certificates for those keys back, all saved in the
//! profile with the cluster's CAs as trust roots.

use crate::error::ClientError;
use crate::profile::{Home, Profile, ProfileFiles, ProfileMeta, parse_host_ca_lines};
use crate::web::{self, LoginAnswer, LoginBody, ProxyAddr, WebTrust};
use jumpgate_api::TlsCredentials;
use jumpgate_pki::ssh::{EXT_CLUSTER, EXT_USER};
use jumpgate_pki::ssh_key::Certificate;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A password, kept out of `Debug` output and logs.
#[derive(Clone, Default)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// What a login needs.
#[derive(Debug, Clone)]
pub struct LoginParams {
    pub proxy: ProxyAddr,
    pub user: String,
    pub password: Password,
    /// The current TOTP code; empty when the cluster has no second factor.
    pub otp: String,
    /// How long the certificates should live; `None`: the cluster's default (the roles
    /// may shorten it).
    pub ttl: Option<Duration>,
    /// How the proxy's web certificate is checked.
    pub trust: WebTrust,
    /// The `--ca-cert` file behind `trust`, recorded in the profile.
    pub ca_cert: Option<PathBuf>,
}

/// Logs in and replaces the profile in `home` with the new keys and certificates.
pub async fn login(home: &Home, params: &LoginParams) -> Result<Profile, ClientError> {
    let ssh_key = jumpgate_pki::generate_ssh_key(&format!("{}@jumpgate", params.user))?;
    let (tls_key, tls_public_key) = jumpgate_pki::generate_tls_key()?;
    let ttl_seconds = ttl_seconds(params.ttl);
    let answer = web::post_login(
        &params.proxy,
        &params.trust,
        &LoginBody {
            user: &params.user,
            password: params.password.expose(),
            otp: &params.otp,
            ssh_public_key: ssh_key.public_openssh.trim(),
            tls_public_key_pem: &tls_public_key,
            ttl_seconds,
        },
    )
    .await?;

    save_login(
        home,
        &Issued {
            proxy: &params.proxy,
            trust: &params.trust,
            ca_cert: params.ca_cert.clone(),
            user: Some(params.user.clone()),
        },
        ssh_key,
        tls_key,
        answer,
    )
    .await
}

/// A wanted certificate TTL as the web API takes it: seconds, 0 for the cluster's default.
pub(crate) fn ttl_seconds(ttl: Option<Duration>) -> i64 {
    ttl.map(|ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Where a login's certificates came from, for the profile.
pub(crate) struct Issued<'a> {
    pub proxy: &'a ProxyAddr,
    pub trust: &'a WebTrust,
    pub ca_cert: Option<PathBuf>,
    /// The user name, when the login named one (an SSO login learns it from the
    /// certificate).
    pub user: Option<String>,
}

/// Checks an answer's certificates against the keys this login made and replaces the
/// profile with them.
pub(crate) async fn save_login(
    home: &Home,
    issued: &Issued<'_>,
    ssh_key: jumpgate_pki::SshKeyPair,
    tls_key: String,
    answer: LoginAnswer,
) -> Result<Profile, ClientError> {
    // Check everything before a file is replaced: a bad answer must not destroy a
    // working profile.
    let bad = |what: &'static str, reason: String| ClientError::BadResponse { what, reason };
    let cert = Certificate::from_openssh(answer.ssh_certificate.trim())
        .map_err(|err| bad("SSH certificate", err.to_string()))?;
    let our_key = jumpgate_pki::ssh_key::PublicKey::from_openssh(ssh_key.public_openssh.trim())
        .map_err(|err| bad("SSH certificate", err.to_string()))?;
    if cert.public_key() != our_key.key_data() {
        return Err(bad(
            "SSH certificate",
            "it is not for the key this login sent".to_string(),
        ));
    }
    let tls_ca = answer.tls_ca_pems.join("\n");
    TlsCredentials::from_pem(&answer.tls_certificate_pem, &tls_key, &tls_ca)
        .map_err(|err| bad("TLS certificate", err.to_string()))?;
    let host_cas = parse_host_ca_lines(&answer.host_ca_known_hosts)
        .map_err(|err| bad("host CA", err.to_string()))?;
    if host_cas.is_empty() {
        return Err(bad("host CA", "no @cert-authority line".to_string()));
    }
    let user = match &issued.user {
        Some(user) => user.clone(),
        None => cert
            .extensions()
            .get(EXT_USER)
            .cloned()
            .unwrap_or_else(|| cert.key_id().to_string()),
    };
    let cluster = match cert.extensions().get(EXT_CLUSTER) {
        Some(cluster) if !cluster.is_empty() => cluster.clone(),
        _ => web::ping(issued.proxy, issued.trust).await?.cluster_name,
    };

    let files = ProfileFiles {
        ssh_private_key: ssh_key.private_openssh,
        ssh_public_key: ssh_key.public_openssh,
        ssh_certificate: with_newline(answer.ssh_certificate),
        tls_key,
        tls_certificate: with_newline(answer.tls_certificate_pem),
        tls_ca: with_newline(tls_ca),
        known_hosts: with_newline(answer.host_ca_known_hosts),
    };
    let meta = ProfileMeta {
        proxy: issued.proxy.to_string(),
        user,
        cluster,
        expires_unix: answer.expires_unix,
        principals: answer.principals,
        roles: answer.roles,
        insecure: matches!(issued.trust, WebTrust::DangerousInsecure),
        ca_cert: issued.ca_cert.clone(),
    };
    home.save(&files, &meta)
}

fn with_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}
