//! Issuing certificates: for users (login, `jctl auth sign --user`), for hosts (join,
//! `jctl auth sign --host`). What goes into a user certificate comes from the user's
//! roles, evaluated here once: logins (principals), permissions, TTL cap.

use super::AuthServer;
use super::caller::{Caller, traits_of};
use super::errors::ServiceError;
use crate::users::User;
use jumpgate_api::proto;
use jumpgate_audit::{AuditEvent, EventType};
use jumpgate_pki::ssh_key::PublicKey;
use jumpgate_pki::{
    HostCertParams, IdentityKind, Permissions, TlsCertParams, TlsIdentity, UserCertParams,
};
use jumpgate_types::AccessChecker;
use jumpgate_types::config::JoinRole;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A user certificate's TTL when the request names none (DESIGN.md "Identity").
pub const DEFAULT_USER_TTL: Duration = Duration::from_secs(12 * 3600);
/// Host certificates from a join or renewal live 30 days; hosts renew them when two
/// thirds have passed (`jumpgate_node::renew`), so a stolen one is not good for a year.
pub const DEFAULT_HOST_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest certificate anyone may ask for.
const MAX_HOST_TTL: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// What a user was issued.
#[derive(Debug)]
pub struct IssuedUserCerts {
    pub ssh_certificate: String,
    pub tls_certificate_pem: String,
    pub expires: SystemTime,
    pub principals: Vec<String>,
}

fn parse_ssh_public_key(text: &str) -> Result<PublicKey, ServiceError> {
    let text = text.trim();
    if text.contains("-cert-v01@openssh.com") {
        return Err(ServiceError::invalid(
            "ssh_public_key is a certificate; send the plain public key (the .pub file)",
        ));
    }
    PublicKey::from_openssh(text).map_err(|err| {
        ServiceError::invalid(format!(
            "ssh_public_key is not an OpenSSH public key line ({err}); send the .pub file"
        ))
    })
}

/// Host names, UUIDs and addresses: plain names only (no spaces, commas, wildcards).
fn valid_principal(principal: &str) -> bool {
    crate::names::is_plain_name(principal, &[':'])
}

impl AuthServer {
    /// Issues a user's SSH certificate (when `ssh_public_key` is set) and X.509
    /// certificate (when `tls_public_key_pem` is set), as the user's roles allow.
    pub(crate) async fn issue_user_certs(
        &self,
        user: &User,
        ssh_public_key: &str,
        tls_public_key_pem: &str,
        requested_ttl: Option<Duration>,
        caller: &Caller,
        client_addr: Option<&str>,
    ) -> Result<IssuedUserCerts, ServiceError> {
        if ssh_public_key.trim().is_empty() && tls_public_key_pem.trim().is_empty() {
            return Err(ServiceError::invalid(
                "send an ssh_public_key, a tls_public_key_pem, or both",
            ));
        }
        if let Some(refusal) = self.lock_refusal(&jumpgate_types::LockSubject {
            user: Some(user.name.as_str()),
            roles: &user.roles,
            ..jumpgate_types::LockSubject::default()
        }) {
            let err = ServiceError::PermissionDenied(format!("access denied: {refusal}"));
            return Err(self.refuse(caller, "IssueCertificates", err).await);
        }
        let roles = self.cached_roles(&user.roles).map_err(|err| match err {
            ServiceError::PermissionDenied(message) => ServiceError::invalid(format!(
                "user {:?} has a role that does not exist: {message}",
                user.name
            )),
            other => other,
        })?;
        let checker = AccessChecker::new(roles.iter(), &traits_of(user));
        let ttl = checker.adjust_session_ttl(requested_ttl.unwrap_or(DEFAULT_USER_TTL));
        let now = SystemTime::now();
        // An SSO user lasts as long as the identity provider's login allows (the
        // connector's max_session_ttl, SAML's SessionNotOnOrAfter): no certificate, CLI or
        // web, outlives it, so whoever the provider drops loses access by then.
        let ttl = match &user.sso {
            None => ttl,
            Some(origin) => {
                let ends = UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(origin.expires_unix).unwrap_or(0));
                match ends.duration_since(now) {
                    Ok(left) if left >= Duration::from_secs(1) => ttl.min(left),
                    _ => {
                        return Err(ServiceError::PermissionDenied(format!(
                            "the single sign-on login of {:?} through connector {:?} has \
                             ended; log in again",
                            user.name, origin.connector
                        )));
                    }
                }
            }
        };
        let principals: Vec<String> = checker.logins().into_iter().collect();
        let authorities = self.authorities();
        let outcome = (|| -> Result<IssuedUserCerts, ServiceError> {
            let mut ssh_certificate = String::new();
            if !ssh_public_key.trim().is_empty() {
                let public_key = parse_ssh_public_key(ssh_public_key)?;
                let options = checker.options();
                let params = UserCertParams {
                    public_key,
                    user: user.name.clone(),
                    logins: principals.clone(),
                    roles: user.roles.clone(),
                    traits: traits_of(user),
                    ttl,
                    permissions: Permissions {
                        pty: true,
                        port_forwarding: options.port_forwarding,
                        agent_forwarding: options.forward_agent,
                        x11_forwarding: options.permit_x11_forwarding,
                        user_rc: false,
                    },
                    source_address: None,
                };
                let cert = authorities
                    .user
                    .sign_user(&params, now)
                    .map_err(|err| ServiceError::invalid(err.to_string()))?;
                ssh_certificate = cert.to_openssh().map_err(ServiceError::internal)?;
            }
            let mut tls_certificate_pem = String::new();
            if !tls_public_key_pem.trim().is_empty() {
                let params = TlsCertParams {
                    identity: TlsIdentity {
                        cluster: authorities.cluster.clone(),
                        kind: IdentityKind::User,
                        name: user.name.clone(),
                        roles: user.roles.clone(),
                    },
                    public_key_pem: tls_public_key_pem.to_string(),
                    dns_names: Vec::new(),
                    ip_addresses: Vec::new(),
                    ttl,
                };
                tls_certificate_pem = authorities
                    .tls
                    .issue(&params, now)
                    .map_err(|err| ServiceError::invalid(err.to_string()))?;
            }
            Ok(IssuedUserCerts {
                ssh_certificate,
                tls_certificate_pem,
                expires: now + ttl,
                principals: principals.clone(),
            })
        })();
        if outcome.is_ok() {
            jumpgate_telemetry::count(|m| &m.certificates_issued, &["user"]);
        }
        let mut event = match &outcome {
            Ok(_) => AuditEvent::success(EventType::CertCreate),
            Err(err) => AuditEvent::failure(EventType::CertCreate, err.to_string()),
        }
        .user(user.name.as_str())
        .field("cert_type", "user")
        .field("by", caller.audit_name())
        .field("roles", user.roles.join(","))
        .field("principals", principals.join(","))
        .field("ttl_seconds", ttl.as_secs());
        if let Some(addr) = client_addr {
            event = event.remote_addr(addr);
        }
        self.audit(event).await?;
        outcome
    }

    /// Signs a host SSH certificate: principals are the host's name, id and the extra
    /// names given. Returns the certificate and its expiry.
    pub(crate) async fn issue_host_ssh_cert(
        &self,
        host_name: &str,
        host_id: &str,
        extra_principals: &[String],
        ssh_public_key: &str,
        requested_ttl: Option<Duration>,
        caller: &Caller,
    ) -> Result<(String, SystemTime), ServiceError> {
        let ttl = requested_ttl.unwrap_or(DEFAULT_HOST_TTL);
        let now = SystemTime::now();
        let mut principals: Vec<String> = Vec::new();
        for principal in [host_name, host_id]
            .into_iter()
            .chain(extra_principals.iter().map(String::as_str))
        {
            if !valid_principal(principal) {
                return Err(ServiceError::invalid(format!(
                    "host principal {principal:?} must be a host name, UUID or address \
                     (letters, digits, '-', '_', '.', ':')"
                )));
            }
            if !principals.iter().any(|p| p == principal) {
                principals.push(principal.to_string());
            }
        }
        let outcome = (|| -> Result<String, ServiceError> {
            if ttl > MAX_HOST_TTL {
                return Err(ServiceError::invalid(format!(
                    "a host certificate may live at most {} days",
                    MAX_HOST_TTL.as_secs() / 86400
                )));
            }
            let public_key = parse_ssh_public_key(ssh_public_key)?;
            let cert = self
                .authorities()
                .host
                .sign_host(
                    &HostCertParams {
                        public_key,
                        host_id: host_id.to_string(),
                        principals: principals.clone(),
                        ttl,
                    },
                    now,
                )
                .map_err(|err| ServiceError::invalid(err.to_string()))?;
            cert.to_openssh().map_err(ServiceError::internal)
        })();
        if outcome.is_ok() {
            jumpgate_telemetry::count(|m| &m.certificates_issued, &["host"]);
        }
        let event = match &outcome {
            Ok(_) => AuditEvent::success(EventType::CertCreate),
            Err(err) => AuditEvent::failure(EventType::CertCreate, err.to_string()),
        }
        .user(caller.audit_name())
        .server_id(host_id)
        .field("cert_type", "host")
        .field("principals", principals.join(","))
        .field("ttl_seconds", ttl.as_secs());
        self.audit(event).await?;
        Ok((outcome?, now + ttl))
    }

    /// A host with a join token asks for its certificates. Auth decides the identity:
    /// no reserved names, and the requested UUID only if no other key holds it.
    pub(crate) async fn join_host(
        &self,
        caller: &Caller,
        request: proto::JoinRequest,
    ) -> Result<proto::JoinResponse, ServiceError> {
        let role: JoinRole = request
            .role
            .parse()
            .map_err(|err| ServiceError::invalid(format!("role: {err}")))?;
        let kind = match role {
            JoinRole::Node => IdentityKind::Node,
            JoinRole::Proxy => IdentityKind::Proxy,
            _ => {
                return Err(ServiceError::invalid(format!(
                    "joining as {role} is not supported; join as node or proxy"
                )));
            }
        };
        Self::check_host_request(&request)?;
        self.check_host_names(caller, "Join", kind, &request.host_name, &request.addresses)
            .await?;
        let remote = Self::client_addr_text(caller, &request.client_addr);
        self.tokens()
            .check_join(
                &request.token,
                role,
                &request.host_name,
                remote.as_deref(),
                SystemTime::now(),
            )
            .await?;
        let host_uuid = self
            .register_host_uuid(
                caller,
                remote.as_deref(),
                kind,
                &request.host_uuid,
                &request.host_name,
                &request.tls_public_key_pem,
            )
            .await?;
        let request = proto::JoinRequest {
            host_uuid,
            ..request
        };
        self.issue_host_identity(caller, role, kind, &request).await
    }

    /// A joined host (node or proxy) asks for new certificates for new keys, under the
    /// current CAs: after a CA rotation, or before its certificates expire. Its identity
    /// (kind and host UUID) comes from the certificate it calls with, never from the
    /// request.
    pub(crate) async fn renew_host_identity(
        &self,
        caller: &Caller,
        request: proto::RenewHostRequest,
    ) -> Result<proto::JoinResponse, ServiceError> {
        let Some(identity) = caller.identity.as_ref() else {
            return Err(ServiceError::Unauthenticated(
                "renewing needs the host's current certificate".to_string(),
            ));
        };
        let (role, kind) = match identity.kind {
            IdentityKind::Node => (JoinRole::Node, IdentityKind::Node),
            IdentityKind::Proxy => (JoinRole::Proxy, IdentityKind::Proxy),
            other => {
                return Err(ServiceError::PermissionDenied(format!(
                    "only nodes and proxies renew host certificates, not {other}"
                )));
            }
        };
        let request = proto::JoinRequest {
            token: String::new(),
            role: role.to_string(),
            host_name: request.host_name,
            host_uuid: identity.name.clone(),
            ssh_public_key: request.ssh_public_key,
            tls_public_key_pem: request.tls_public_key_pem,
            addresses: request.addresses,
            client_addr: String::new(),
        };
        Self::check_host_request(&request)?;
        self.check_host_names(
            caller,
            "RenewHost",
            kind,
            &request.host_name,
            &request.addresses,
        )
        .await?;
        self.reregister_host_uuid(
            kind,
            &request.host_uuid,
            &request.host_name,
            &request.tls_public_key_pem,
        )
        .await?;
        self.issue_host_identity(caller, role, kind, &request).await
    }

    /// Names, addresses and both keys must be usable before anything is checked or
    /// issued: a join that cannot finish must not be audited as one that did.
    fn check_host_request(request: &proto::JoinRequest) -> Result<(), ServiceError> {
        for (what, value) in [
            ("host_name", &request.host_name),
            ("host_uuid", &request.host_uuid),
        ] {
            if !valid_principal(value) {
                return Err(ServiceError::invalid(format!(
                    "{what} {value:?} must be 1-253 letters, digits, '-', '_', '.'"
                )));
            }
        }
        parse_ssh_public_key(&request.ssh_public_key)?;
        jumpgate_pki::check_public_key_pem(&request.tls_public_key_pem)
            .map_err(|err| ServiceError::invalid(format!("tls_public_key_pem: {err}")))?;
        for address in &request.addresses {
            if !valid_principal(address) {
                return Err(ServiceError::invalid(format!(
                    "address {address:?} must be a host name or IP address"
                )));
            }
        }
        Ok(())
    }

    /// Issues a host's SSH and X.509 certificates and answers with the cluster's CAs.
    async fn issue_host_identity(
        &self,
        caller: &Caller,
        role: JoinRole,
        kind: IdentityKind,
        request: &proto::JoinRequest,
    ) -> Result<proto::JoinResponse, ServiceError> {
        // `NAME.CLUSTER` and `UUID.CLUSTER` too, as Teleport: the names OpenSSH users
        // type with `jsh config`'s `Host *.CLUSTER` block, which OpenSSH checks the host
        // certificate against.
        let cluster = self.authorities().cluster.clone();
        let mut principals = request.addresses.clone();
        principals.push(format!("{}.{cluster}", request.host_name));
        principals.push(format!("{}.{cluster}", request.host_uuid));
        let (ssh_host_certificate, _) = self
            .issue_host_ssh_cert(
                &request.host_name,
                &request.host_uuid,
                &principals,
                &request.ssh_public_key,
                None,
                caller,
            )
            .await?;
        // Only hosts that serve TLS (proxies) get names in their X.509 certificate; a
        // node's only dials out.
        let (dns_names, ip_addresses): (Vec<String>, Vec<IpAddr>) = if kind != IdentityKind::Proxy {
            (Vec::new(), Vec::new())
        } else {
            let mut dns = vec![request.host_name.clone()];
            let mut ips = Vec::new();
            for address in &request.addresses {
                match address.parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => dns.push(address.clone()),
                }
            }
            (dns, ips)
        };
        let authorities = self.authorities();
        let now = SystemTime::now();
        let tls = authorities.tls.issue(
            &TlsCertParams {
                identity: TlsIdentity {
                    cluster: authorities.cluster.clone(),
                    kind,
                    name: request.host_uuid.clone(),
                    roles: vec![role.to_string()],
                },
                public_key_pem: request.tls_public_key_pem.clone(),
                dns_names,
                ip_addresses,
                ttl: DEFAULT_HOST_TTL,
            },
            now,
        );
        let event = match &tls {
            Ok(_) => AuditEvent::success(EventType::CertCreate),
            Err(err) => AuditEvent::failure(EventType::CertCreate, err.to_string()),
        }
        .user(caller.audit_name())
        .server_id(request.host_uuid.as_str())
        .field("cert_type", "tls")
        .field("identity", kind.as_str());
        self.audit(event).await?;
        let tls_certificate_pem = tls.map_err(|err| ServiceError::invalid(err.to_string()))?;
        let export =
            |result: Result<String, jumpgate_pki::PkiError>| result.map_err(ServiceError::internal);
        Ok(proto::JoinResponse {
            ssh_host_certificate,
            tls_certificate_pem,
            tls_ca_pems: authorities.tls.trusted_cert_pems(),
            user_ca_keys: export(authorities.user.export_openssh())?,
            host_ca_known_hosts: export(authorities.host.export_openssh())?,
            cluster_name: authorities.cluster.clone(),
            host_uuid: request.host_uuid.clone(),
        })
    }
}
