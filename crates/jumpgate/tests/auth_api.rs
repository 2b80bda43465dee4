//! The auth service's gRPC API end to end: the real `jumpgate` daemon, called from Rust
//! as different identities (admin, a joined proxy, users with roles, anonymous hosts,
//! another cluster's admin), over mutual TLS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use jumpgate_api::forwarded::ForwardSigner;
use jumpgate_api::proto;
use jumpgate_api::{AuthClient, TlsCredentials};
use jumpgate_pki::ssh_key::{Certificate, Fingerprint, PublicKey, certificate::CertType};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Daemon, PASSWORD, start_dev_daemon, tls_client_trusting, totp_at, totp_now};
use tonic::Code;

/// A dev cluster in its own data directory, and where its auth API listens.
struct Cluster {
    daemon: Daemon,
    data: PathBuf,
    addr: String,
    /// The cluster's TLS CA certificate(s), as the admin identity trusts them.
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `jumpgate start --dev` and waits until the auth API has written the admin
    /// identity and `/readyz` says ready.
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let daemon = start_dev_daemon(&data, &dir.path().join("log"));
        let admin = data.join("admin");
        let addr = read(&admin.join("auth_addr")).trim().to_string();
        let ca_pem = read(&admin.join("ca.pem"));
        Cluster {
            daemon,
            data,
            addr,
            ca_pem,
            _dir: dir,
        }
    }

    fn admin_file(&self, name: &str) -> String {
        read(&self.data.join("admin").join(name))
    }

    /// A client with the admin identity `jctl` uses.
    async fn admin(&self) -> AuthClient {
        self.connect_as(&self.admin_file("cert.pem"), &self.admin_file("key.pem"))
            .await
    }

    /// A client presenting this certificate and key, trusting this cluster's CA.
    async fn connect_as(&self, cert_pem: &str, key_pem: &str) -> AuthClient {
        let tls = TlsCredentials::from_pem(cert_pem, key_pem, &self.ca_pem)
            .unwrap()
            .client_config()
            .unwrap();
        jumpgate_api::connect(&self.addr, tls).await.unwrap()
    }

    /// A client without a certificate that trusts this cluster's CA (from its PEM).
    async fn anonymous(&self) -> AuthClient {
        let config = tls_client_trusting(self.ca_pem.as_bytes(), b"h2");
        jumpgate_api::connect(&self.addr, config).await.unwrap()
    }

    /// A client without a certificate that trusts the CA by its `ca_pin`, as a joining
    /// host does.
    async fn pinned(&self, pins: &[String]) -> AuthClient {
        let tls = jumpgate_api::tls::pinned_client_config(pins).unwrap();
        jumpgate_api::connect(&self.addr, tls).await.unwrap()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// A host's or user's own fresh keys.
struct Keys {
    tls_private_pem: String,
    tls_public_pem: String,
    ssh_public: String,
}

fn fresh_keys() -> Keys {
    let (tls_private_pem, tls_public_pem) = jumpgate_pki::generate_tls_key().unwrap();
    let ssh = jumpgate_pki::generate_ssh_key("test").unwrap();
    Keys {
        tls_private_pem,
        tls_public_pem,
        ssh_public: ssh.public_openssh,
    }
}

/// A code of the same secret from an hour ago: well-formed, and wrong now.
fn totp_stale(otpauth_uri: &str) -> String {
    totp_at(otpauth_uri, SystemTime::now() - Duration::from_secs(3600))
}

async fn ca_pins(admin: &mut AuthClient) -> Vec<String> {
    let pins = admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .ca_pins;
    assert!(!pins.is_empty());
    pins
}

async fn create_user(
    admin: &mut AuthClient,
    name: &str,
    roles: &[&str],
    logins: &[&str],
    password: &str,
) -> proto::CreateUserResponse {
    admin
        .create_user(proto::CreateUserRequest {
            name: name.to_string(),
            roles: roles.iter().map(ToString::to_string).collect(),
            logins: logins.iter().map(ToString::to_string).collect(),
            password: password.to_string(),
        })
        .await
        .unwrap_or_else(|status| panic!("CreateUser {name}: {status:?}"))
        .into_inner()
}

async fn join_token(admin: &mut AuthClient, role: &str) -> proto::CreateJoinTokenResponse {
    admin
        .create_join_token(proto::CreateJoinTokenRequest {
            roles: vec![role.to_string()],
            ttl_seconds: 0,
            reusable: false,
        })
        .await
        .unwrap()
        .into_inner()
}

fn join_request(token: &str, role: &str, host_name: &str, keys: &Keys) -> proto::JoinRequest {
    proto::JoinRequest {
        token: token.to_string(),
        role: role.to_string(),
        host_name: host_name.to_string(),
        host_uuid: format!("{host_name}-uuid"),
        ssh_public_key: keys.ssh_public.clone(),
        tls_public_key_pem: keys.tls_public_pem.clone(),
        addresses: vec!["192.0.2.10".to_string()],
        // Only a proxy may say where its client is; from anyone else this is ignored.
        client_addr: "203.0.113.9:4444".to_string(),
    }
}

/// Joins as a proxy with a fresh token and fresh keys; a client with the proxy identity.
async fn join_as_proxy(cluster: &Cluster, admin: &mut AuthClient) -> AuthClient {
    join_as(cluster, admin, "proxy", "proxy1").await
}

/// A host identity of `role` (`node`, `proxy`), joined with a fresh token.
async fn join_as(cluster: &Cluster, admin: &mut AuthClient, role: &str, host: &str) -> AuthClient {
    let tls = joined_credentials(cluster, admin, role, host)
        .await
        .client_config()
        .unwrap();
    jumpgate_api::connect(&cluster.addr, tls).await.unwrap()
}

/// The certificate and key of a host of `role` joined with a fresh token.
async fn joined_credentials(
    cluster: &Cluster,
    admin: &mut AuthClient,
    role: &str,
    host: &str,
) -> TlsCredentials {
    let pins = ca_pins(admin).await;
    let token = join_token(admin, role).await.token;
    let keys = fresh_keys();
    let joined = cluster
        .pinned(&pins)
        .await
        .join(join_request(&token, role, host, &keys))
        .await
        .unwrap()
        .into_inner();
    TlsCredentials::from_pem(
        &joined.tls_certificate_pem,
        &keys.tls_private_pem,
        &joined.tls_ca_pems.join("\n"),
    )
    .unwrap()
}

/// A user identity (TLS certificate for a fresh key) signed by the admin.
async fn user_identity(cluster: &Cluster, admin: &mut AuthClient, user: &str) -> AuthClient {
    let keys = fresh_keys();
    let signed = admin
        .sign_user(proto::SignUserRequest {
            user: user.to_string(),
            tls_public_key_pem: keys.tls_public_pem.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("SignUser {user}: {status:?}"))
        .into_inner();
    cluster
        .connect_as(&signed.tls_certificate_pem, &keys.tls_private_pem)
        .await
}

fn signup_request(token: &str, password: &str, otp: &str) -> proto::CompleteSignupRequest {
    proto::CompleteSignupRequest {
        token: token.to_string(),
        password: password.to_string(),
        otp: otp.to_string(),
        ..Default::default()
    }
}

/// A six-digit code that is not the current one (nor the one before or after it).
fn wrong_code(otpauth_uri: &str) -> String {
    let now = SystemTime::now();
    let near: Vec<String> = [
        now - Duration::from_secs(30),
        now,
        now + Duration::from_secs(30),
    ]
    .iter()
    .map(|at| totp_at(otpauth_uri, *at))
    .collect();
    (0..1000u32)
        .map(|n| format!("{:06}", n * 997 % 1_000_000))
        .find(|code| !near.contains(code))
        .unwrap()
}

fn login_request(user: &str, password: &str, otp: &str, client_addr: &str) -> proto::LoginRequest {
    let keys = fresh_keys();
    proto::LoginRequest {
        user: user.to_string(),
        password: password.to_string(),
        otp: otp.to_string(),
        ssh_public_key: keys.ssh_public,
        tls_public_key_pem: keys.tls_public_pem,
        ttl_seconds: 0,
        client_addr: client_addr.to_string(),
    }
}

/// Every audit event of these types so far, oldest first.
async fn events(admin: &mut AuthClient, types: &[&str]) -> Vec<Value> {
    admin
        .search_events(proto::SearchEventsRequest {
            types: types.iter().map(ToString::to_string).collect(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .iter()
        .map(|text| serde_json::from_str(text).unwrap())
        .collect()
}

fn field<'a>(event: &'a Value, name: &str) -> &'a str {
    event.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn failed(event: &Value) -> bool {
    event.get("success") == Some(&Value::Bool(false))
}

/// The certificate's `jumpgate://` identity URI and its SubjectPublicKeyInfo (DER).
fn tls_identity(cert_pem: &str) -> (String, Vec<u8>) {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    tls_identity_der(&pem.contents)
}

/// [`tls_identity`] of a DER certificate.
fn tls_identity_der(der: &[u8]) -> (String, Vec<u8>) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert
        .subject_alternative_name()
        .unwrap()
        .expect("a subject alternative name");
    let uri = san
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("jumpgate://") => {
                Some((*uri).to_string())
            }
            _ => None,
        })
        .expect("a jumpgate:// URI");
    (uri, cert.public_key().raw.to_vec())
}

fn pem_contents(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn join_as_proxy_then_login_issues_certificates_for_the_users_own_keys() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let status = admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.cluster_name, "dev");
    assert_eq!(status.caller, "admin admin", "{status:?}");
    let bob = create_user(&mut admin, "bob", &["access"], &["bob", "ubuntu"], PASSWORD).await;
    assert!(
        bob.otpauth_uri.starts_with("otpauth://totp/"),
        "{:?}",
        bob.otpauth_uri
    );
    assert!(bob.signup_token.is_empty(), "a password was given");

    // The joining proxy has only the token and the pin; it keeps its own keys.
    let token = join_token(&mut admin, "proxy").await;
    assert_eq!(token.ca_pins, status.ca_pins);
    let host_keys = fresh_keys();
    let joined = cluster
        .pinned(&status.ca_pins)
        .await
        .join(join_request(&token.token, "proxy", "proxy1", &host_keys))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(joined.cluster_name, "dev");
    let (proxy_uri, proxy_spki) = tls_identity(&joined.tls_certificate_pem);
    assert!(
        proxy_uri.starts_with("jumpgate://dev/proxy/proxy1-uuid"),
        "{proxy_uri}"
    );
    assert_eq!(proxy_spki, pem_contents(&host_keys.tls_public_pem));
    let host_cert = Certificate::from_openssh(joined.ssh_host_certificate.trim()).unwrap();
    assert_eq!(host_cert.cert_type(), CertType::Host);
    assert!(host_cert.valid_principals().contains(&"proxy1".to_string()));
    let host_public = PublicKey::from_openssh(host_keys.ssh_public.trim()).unwrap();
    assert_eq!(host_cert.public_key(), host_public.key_data());
    let host_ca: Vec<Fingerprint> = status
        .host_ca_fingerprints
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
    host_cert.validate(&host_ca).unwrap();

    let tls = TlsCredentials::from_pem(
        &joined.tls_certificate_pem,
        &host_keys.tls_private_pem,
        &joined.tls_ca_pems.join("\n"),
    )
    .unwrap()
    .client_config()
    .unwrap();
    let mut proxy = jumpgate_api::connect(&cluster.addr, tls).await.unwrap();
    let proxy_status = proxy
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proxy_status.caller, "proxy proxy1-uuid");

    // The proxy logs bob in, for bob's own fresh keys, from the address bob came from.
    let user_keys = fresh_keys();
    let login = proxy
        .login(proto::LoginRequest {
            user: "bob".to_string(),
            password: PASSWORD.to_string(),
            otp: totp_now(&bob.otpauth_uri),
            ssh_public_key: user_keys.ssh_public.clone(),
            tls_public_key_pem: user_keys.tls_public_pem.clone(),
            ttl_seconds: 0,
            client_addr: "203.0.113.7:50000".to_string(),
        })
        .await
        .unwrap_or_else(|status| panic!("login: {status:?}"))
        .into_inner();
    let principals: BTreeSet<&str> = login.principals.iter().map(String::as_str).collect();
    assert_eq!(principals, BTreeSet::from(["bob", "ubuntu"]));
    assert_eq!(login.roles, vec!["access".to_string()]);
    // Default TTL: 12 hours.
    let twelve_hours = 12 * 3600;
    assert!(
        (login.expires_unix - unix_now() - twelve_hours).abs() < 120,
        "expires {} now {}",
        login.expires_unix,
        unix_now()
    );

    let cert = Certificate::from_openssh(login.ssh_certificate.trim()).unwrap();
    assert_eq!(cert.cert_type(), CertType::User);
    let cert_principals: BTreeSet<&str> =
        cert.valid_principals().iter().map(String::as_str).collect();
    assert_eq!(cert_principals, BTreeSet::from(["bob", "ubuntu"]));
    assert_eq!(cert.key_id(), "bob");
    assert!(cert.extensions().contains_key("permit-pty"), "{cert:?}");
    assert_eq!(
        cert.extensions()
            .get("jumpgate-user@jumpgate")
            .map(String::as_str),
        Some("bob")
    );
    assert_eq!(
        cert.extensions()
            .get("jumpgate-roles@jumpgate")
            .map(String::as_str),
        Some("access")
    );
    assert!(
        cert.critical_options().is_empty(),
        "{:?}",
        cert.critical_options()
    );
    let user_public = PublicKey::from_openssh(user_keys.ssh_public.trim()).unwrap();
    assert_eq!(cert.public_key(), user_public.key_data(), "bob's own key");
    let valid_for = cert.valid_before() as i64 - unix_now();
    assert!((valid_for - twelve_hours).abs() < 120, "{valid_for}");
    let user_ca: Vec<Fingerprint> = status
        .user_ca_fingerprints
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
    cert.validate(&user_ca).expect("signed by the user CA");
    assert!(
        cert.validate(&host_ca).is_err(),
        "a user certificate must not come from the host CA"
    );
    assert!(
        login.host_ca_known_hosts.contains("@cert-authority"),
        "{}",
        login.host_ca_known_hosts
    );

    // The X.509 certificate: bob's identity, for bob's TLS key, and it works.
    let (uri, spki) = tls_identity(&login.tls_certificate_pem);
    assert!(uri.starts_with("jumpgate://dev/user/bob?"), "{uri}");
    assert!(uri.contains("access"), "{uri}");
    assert_eq!(spki, pem_contents(&user_keys.tls_public_pem));
    let bob_tls = TlsCredentials::from_pem(
        &login.tls_certificate_pem,
        &user_keys.tls_private_pem,
        &login.tls_ca_pems.join("\n"),
    )
    .unwrap()
    .client_config()
    .unwrap();
    let mut bob_client = jumpgate_api::connect(&cluster.addr, bob_tls).await.unwrap();
    let bob_status = bob_client
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bob_status.caller, "user bob");

    // Audited: the join, the login (with bob's address, as the proxy claimed it) and the
    // certificates issued by the proxy.
    let joins = events(&mut admin, &["instance.join"]).await;
    assert!(
        joins.iter().any(|e| !failed(e)
            && field(e, "node_name") == "proxy1"
            && field(e, "role") == "proxy"
            && field(e, "token_id") == token.id),
        "{joins:#?}"
    );
    let logins = events(&mut admin, &["user.login"]).await;
    assert!(
        logins.iter().any(|e| !failed(e)
            && field(e, "user") == "bob"
            && field(e, "addr.remote") == "203.0.113.7:50000"),
        "{logins:#?}"
    );
    let certs = events(&mut admin, &["cert.create"]).await;
    assert!(
        certs.iter().any(|e| !failed(e)
            && field(e, "user") == "bob"
            && field(e, "cert_type") == "user"
            && field(e, "by") == "proxy:proxy1-uuid"),
        "{certs:#?}"
    );
    // The secrets never reach the audit log or the daemon's log.
    let everything = events(&mut admin, &[]).await;
    let text = serde_json::to_string(&everything).unwrap();
    let log = cluster.daemon.log_text();
    for secret in [PASSWORD, token.token.as_str()] {
        assert!(!text.contains(secret), "audit log holds a secret");
        assert!(!log.contains(secret), "daemon log holds a secret");
    }
}

#[tokio::test]
async fn login_failures_are_clear_and_audited() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let carol = create_user(&mut admin, "carol", &["access"], &["carol"], PASSWORD).await;
    let mut proxy = join_as_proxy(&cluster, &mut admin).await;
    // Distinct addresses, as a proxy passes them, keep each client under the rate limit.
    let mut next_addr = 0;
    let mut addr = || {
        next_addr += 1;
        format!("198.51.100.{next_addr}:40000")
    };

    // Only proxies (and admins) may call Login.
    let anonymous = cluster
        .anonymous()
        .await
        .login(login_request(
            "carol",
            PASSWORD,
            &totp_now(&carol.otpauth_uri),
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    assert!(anonymous.message().contains("identity"), "{anonymous:?}");
    let as_user = user_identity(&cluster, &mut admin, "carol")
        .await
        .login(login_request(
            "carol",
            PASSWORD,
            &totp_now(&carol.otpauth_uri),
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(as_user.code(), Code::PermissionDenied, "{as_user:?}");
    assert!(as_user.message().contains("Login"), "{as_user:?}");

    // A wrong password and an unknown user get the same answer.
    let wrong = proxy
        .login(login_request(
            "carol",
            "not the password",
            &totp_now(&carol.otpauth_uri),
            &addr(),
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let unknown = proxy
        .login(login_request(
            "nosuchuser",
            PASSWORD,
            &totp_now(&carol.otpauth_uri),
            &addr(),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    assert_eq!(wrong.message(), unknown.message());
    for word in ["exist", "unknown", "carol", "nosuchuser"] {
        assert!(!wrong.message().contains(word), "{wrong:?}");
    }

    // The right password without a code answers exactly as a wrong password: anything
    // else would confirm the password without the second factor (jsh asks for the
    // code up front, from /webapi/ping).
    let no_code = proxy
        .login(login_request("carol", PASSWORD, "", &addr()))
        .await
        .unwrap_err();
    assert_eq!(no_code.code(), wrong.code(), "{no_code:?}");
    assert_eq!(no_code.message(), wrong.message(), "{no_code:?}");

    // A stale code is a wrong credential like any other. With the first wrong password
    // that makes 2 failures; 3 more wrong passwords make 5 and lock carol.
    let stale = proxy
        .login(login_request(
            "carol",
            PASSWORD,
            &totp_stale(&carol.otpauth_uri),
            &addr(),
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Unauthenticated, "{stale:?}");
    assert_eq!(stale.message(), wrong.message());
    for _ in 0..3 {
        let err = proxy
            .login(login_request(
                "carol",
                "still not the password",
                &totp_now(&carol.otpauth_uri),
                &addr(),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    }
    // Now even the right password and code are refused, saying why.
    let locked = proxy
        .login(login_request(
            "carol",
            PASSWORD,
            &totp_now(&carol.otpauth_uri),
            &addr(),
        ))
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::Unauthenticated, "{locked:?}");
    assert!(locked.message().contains("locked"), "{locked:?}");
    assert!(locked.message().contains("unlock"), "{locked:?}");

    // The admin lifts the lock; the next correct login gets certificates.
    admin
        .unlock_user(proto::UnlockUserRequest {
            name: "carol".to_string(),
        })
        .await
        .unwrap();
    let success_addr = addr();
    let login = proxy
        .login(login_request(
            "carol",
            PASSWORD,
            &totp_now(&carol.otpauth_uri),
            &success_addr,
        ))
        .await
        .unwrap_or_else(|status| panic!("login after unlock: {status:?}"))
        .into_inner();
    assert_eq!(login.principals, vec!["carol".to_string()]);
    let unlock_missing = admin
        .unlock_user(proto::UnlockUserRequest {
            name: "nosuchuser".to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unlock_missing.code(), Code::NotFound, "{unlock_missing:?}");

    // Every attempt is in the audit log, with the address the proxy gave.
    let logins = events(&mut admin, &["user.login"]).await;
    let carol_failures: Vec<&Value> = logins
        .iter()
        .filter(|e| failed(e) && field(e, "user") == "carol")
        .collect();
    // 4 wrong passwords, 1 stale code, 1 missing code, the lock itself, 1 while locked.
    assert_eq!(carol_failures.len(), 8, "{logins:#?}");
    assert!(
        carol_failures
            .iter()
            .any(|e| field(e, "error").contains("one-time code")),
        "{carol_failures:#?}"
    );
    assert!(
        carol_failures
            .iter()
            .any(|e| field(e, "error").contains("locked")
                && field(e, "addr.remote") == "198.51.100.8:40000"),
        "{carol_failures:#?}"
    );
    assert!(
        carol_failures
            .iter()
            .any(|e| field(e, "addr.remote") == "198.51.100.1:40000"),
        "{carol_failures:#?}"
    );
    assert!(
        logins
            .iter()
            .any(|e| failed(e) && field(e, "user") == "nosuchuser"),
        "{logins:#?}"
    );
    let successes: Vec<&Value> = logins.iter().filter(|e| !failed(e)).collect();
    assert_eq!(successes.len(), 1, "{logins:#?}");
    assert_eq!(field(successes[0], "addr.remote"), success_addr);
    let unlocks = events(&mut admin, &["user.update"]).await;
    assert!(
        unlocks
            .iter()
            .any(|e| !failed(e) && field(e, "user") == "carol" && field(e, "change") == "unlocked"),
        "{unlocks:#?}"
    );
    // The callers that may not call Login at all: `auth` refusals.
    let refusals = events(&mut admin, &["auth"]).await;
    for who in ["anonymous", "carol"] {
        assert!(
            refusals
                .iter()
                .any(|e| failed(e) && field(e, "user") == who && field(e, "method") == "Login"),
            "{who}: {refusals:#?}"
        );
    }
}

#[tokio::test]
async fn join_refuses_bad_tokens_and_a_wrong_pin() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let pins = ca_pins(&mut admin).await;
    let node_token = join_token(&mut admin, "node").await;
    let proxy_token = join_token(&mut admin, "proxy").await;
    let mut host = cluster.pinned(&pins).await;
    let keys = fresh_keys();

    let garbage = host
        .join(join_request("not-a-token", "proxy", "garbage", &keys))
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::PermissionDenied, "{garbage:?}");
    assert!(
        garbage.message().contains("invalid or has expired"),
        "{garbage:?}"
    );
    // A well-formed token that was never issued gets the same answer.
    let unissued = host
        .join(join_request(&"ab".repeat(32), "proxy", "unissued", &keys))
        .await
        .unwrap_err();
    assert_eq!(unissued.code(), Code::PermissionDenied, "{unissued:?}");
    assert_eq!(unissued.message(), garbage.message());

    let wrong_role = host
        .join(join_request(&node_token.token, "proxy", "sneaky", &keys))
        .await
        .unwrap_err();
    assert_eq!(wrong_role.code(), Code::PermissionDenied, "{wrong_role:?}");
    assert!(
        wrong_role
            .message()
            .contains("does not allow joining as proxy"),
        "{wrong_role:?}"
    );
    // The same token does what it was made for.
    let node = host
        .join(join_request(&node_token.token, "node", "node1", &keys))
        .await
        .unwrap_or_else(|status| panic!("join as node: {status:?}"))
        .into_inner();
    let (node_uri, _) = tls_identity(&node.tls_certificate_pem);
    assert!(
        node_uri.starts_with("jumpgate://dev/node/node1-uuid"),
        "{node_uri}"
    );

    // A deleted token (by its id, as `jctl tokens rm` does) no longer works.
    admin
        .delete_join_token(proto::DeleteJoinTokenRequest {
            token: proxy_token.id.clone(),
        })
        .await
        .unwrap();
    let listed = admin
        .list_join_tokens(proto::ListJoinTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert!(listed.iter().all(|t| t.id != proxy_token.id), "{listed:?}");
    let deleted = host
        .join(join_request(&proxy_token.token, "proxy", "late", &keys))
        .await
        .unwrap_err();
    assert_eq!(deleted.code(), Code::PermissionDenied, "{deleted:?}");
    assert_eq!(deleted.message(), garbage.message());

    // A pin that is not this cluster's CA: the host cannot even talk to the server.
    let wrong_pin = format!("sha256:{}", "00".repeat(32));
    let tls = jumpgate_api::tls::pinned_client_config(&[wrong_pin]).unwrap();
    let refused = match jumpgate_api::connect(&cluster.addr, tls).await {
        Err(err) => err.to_string(),
        Ok(mut client) => client
            .join(join_request(&node_token.token, "node", "mitm", &keys))
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string(),
    };
    assert!(refused.contains("ca_pin"), "{refused}");
    // A malformed pin is refused before dialling.
    let malformed = jumpgate_api::tls::pinned_client_config(&["sha256:xyz".to_string()])
        .unwrap_err()
        .to_string();
    assert!(malformed.contains("ca_pin"), "{malformed}");

    // Each refusal is an `instance.join` failure naming the host and role; the one join
    // that worked is a success; the MITM'd host never reached the server.
    let joins = events(&mut admin, &["instance.join"]).await;
    let failures: Vec<(&str, &str)> = joins
        .iter()
        .filter(|e| failed(e))
        .map(|e| (field(e, "node_name"), field(e, "role")))
        .collect();
    assert_eq!(
        failures,
        vec![
            ("garbage", "proxy"),
            ("unissued", "proxy"),
            ("sneaky", "proxy"),
            ("late", "proxy"),
        ],
        "{joins:#?}"
    );
    assert!(
        joins
            .iter()
            .all(|e| field(e, "addr.remote").starts_with("127.0.0.1:")),
        "a host chose its own audited address: {joins:#?}"
    );
    let sneaky = joins
        .iter()
        .find(|e| field(e, "node_name") == "sneaky")
        .unwrap();
    assert_eq!(field(sneaky, "token_id"), node_token.id);
    assert!(
        field(sneaky, "error").contains("does not allow"),
        "{sneaky}"
    );
    assert!(
        joins
            .iter()
            .any(|e| !failed(e) && field(e, "node_name") == "node1"),
        "{joins:#?}"
    );
    assert!(
        !joins.iter().any(|e| field(e, "node_name") == "mitm"),
        "{joins:#?}"
    );
    let text = serde_json::to_string(&joins).unwrap();
    assert!(
        !text.contains(&node_token.token),
        "a token value was audited"
    );
    assert!(
        !text.contains(&proxy_token.token),
        "a token value was audited"
    );
}

#[tokio::test]
async fn roles_decide_what_a_user_identity_may_do() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    create_user(&mut admin, "audra", &["auditor"], &[], "").await;
    create_user(&mut admin, "ed", &["editor"], &[], "").await;
    let mut audra = user_identity(&cluster, &mut admin, "audra").await;
    let mut ed = user_identity(&cluster, &mut admin, "ed").await;

    // The auditor reads the audit log and nothing else.
    let status = audra
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.caller, "user audra");
    let seen = audra
        .search_events(proto::SearchEventsRequest {
            types: vec!["user.create".to_string()],
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(seen.events.len() >= 2, "{seen:?}");
    let create = audra
        .create_user(proto::CreateUserRequest {
            name: "mallory".to_string(),
            roles: vec!["editor".to_string()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(create.code(), Code::PermissionDenied, "{create:?}");
    let roles = audra
        .get_resources(proto::GetResourcesRequest {
            kind: "role".to_string(),
            name: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(roles.code(), Code::PermissionDenied, "{roles:?}");
    let token = audra
        .create_join_token(proto::CreateJoinTokenRequest {
            roles: vec!["node".to_string()],
            ttl_seconds: 0,
            reusable: false,
        })
        .await
        .unwrap_err();
    assert_eq!(token.code(), Code::PermissionDenied, "{token:?}");
    let rotate = audra
        .rotate_authority(proto::RotateAuthorityRequest {
            r#type: "user".to_string(),
            grace_period_seconds: 3600,
        })
        .await
        .unwrap_err();
    assert_eq!(rotate.code(), Code::PermissionDenied, "{rotate:?}");

    // The editor manages users and roles, but does not read the audit log.
    let created = ed
        .create_user(proto::CreateUserRequest {
            name: "newbie".to_string(),
            roles: vec!["access".to_string()],
            logins: vec!["newbie".to_string()],
            password: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("editor CreateUser: {status:?}"))
        .into_inner();
    assert!(!created.signup_token.is_empty());
    let documents = ed
        .get_resources(proto::GetResourcesRequest {
            kind: "role".to_string(),
            name: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .documents;
    let names: BTreeSet<String> = documents
        .iter()
        .map(|doc| {
            let value: Value = serde_json::from_str(doc).unwrap();
            value["metadata"]["name"].as_str().unwrap().to_string()
        })
        .collect();
    for builtin in ["access", "auditor", "editor"] {
        assert!(names.contains(builtin), "{names:?}");
    }
    let audit = ed
        .search_events(proto::SearchEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(audit.code(), Code::PermissionDenied, "{audit:?}");

    // Deleting ed takes effect on ed's certificate, which is still valid for hours. The
    // auth service reads users from its watch-fed cache, so allow it a moment.
    admin
        .delete_resource(proto::DeleteResourceRequest {
            kind: "user".to_string(),
            name: "ed".to_string(),
        })
        .await
        .unwrap();
    let mut gone = None;
    for _ in 0..50 {
        match ed
            .get_resources(proto::GetResourcesRequest {
                kind: "role".to_string(),
                name: String::new(),
                ..Default::default()
            })
            .await
        {
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(status) => {
                gone = Some(status);
                break;
            }
        }
    }
    let gone = gone.expect("a deleted user's certificate still works");
    assert_eq!(gone.code(), Code::PermissionDenied, "{gone:?}");
    assert!(gone.message().contains("no longer exists"), "{gone:?}");
    let create_again = ed
        .create_user(proto::CreateUserRequest {
            name: "ed".to_string(),
            roles: vec!["editor".to_string()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        create_again.code(),
        Code::PermissionDenied,
        "{create_again:?}"
    );

    // Every refusal is an `auth` event naming the user and the call.
    let refusals = events(&mut admin, &["auth"]).await;
    let refused = |user: &str, method: &str| {
        refusals
            .iter()
            .any(|e| failed(e) && field(e, "user") == user && field(e, "method") == method)
    };
    for (user, method) in [
        ("audra", "CreateUser"),
        ("audra", "GetResources"),
        ("audra", "CreateJoinToken"),
        ("ed", "SearchEvents"),
        ("ed", "GetResources"),
        ("ed", "CreateUser"),
    ] {
        assert!(refused(user, method), "{user} {method}: {refusals:#?}");
    }
    assert!(
        refusals
            .iter()
            .any(|e| field(e, "user") == "ed" && field(e, "error").contains("no longer exists")),
        "{refusals:#?}"
    );

    // Another cluster's admin certificate (also a cluster named "dev") means nothing here.
    let other = Cluster::start();
    let foreign = TlsCredentials::from_pem(
        &other.admin_file("cert.pem"),
        &other.admin_file("key.pem"),
        &cluster.ca_pem,
    )
    .unwrap()
    .client_config()
    .unwrap();
    let outcome = match jumpgate_api::connect(&cluster.addr, foreign).await {
        Err(err) => Err(err.to_string()),
        Ok(mut client) => client
            .status(proto::StatusRequest {})
            .await
            .map(|r| r.into_inner().caller)
            .map_err(|status| format!("{status:?}")),
    };
    assert!(outcome.is_err(), "a foreign admin got in: {outcome:?}");
    // Nor does the other cluster's admin, trusting its own CA, accept this server.
    let mut other_admin = other.admin().await;
    assert_eq!(
        other_admin
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .caller,
        "admin admin"
    );
    let other_tls = TlsCredentials::from_pem(
        &other.admin_file("cert.pem"),
        &other.admin_file("key.pem"),
        &other.ca_pem,
    )
    .unwrap()
    .client_config()
    .unwrap();
    let outcome = match jumpgate_api::connect(&cluster.addr, other_tls).await {
        Err(err) => Err(err.to_string()),
        Ok(mut client) => client
            .status(proto::StatusRequest {})
            .await
            .map(|r| r.into_inner().caller)
            .map_err(|status| format!("{status:?}")),
    };
    assert!(
        outcome.is_err(),
        "trusted a foreign auth server: {outcome:?}"
    );
}

#[tokio::test]
async fn signup_token_sets_a_password_once() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let dave = create_user(&mut admin, "dave", &["access"], &["dave"], "").await;
    assert!(dave.otpauth_uri.is_empty(), "no password, no enrolment yet");
    assert_eq!(dave.signup_token.len(), 64, "{dave:?}");
    assert!(dave.signup_expires_unix > unix_now());

    // The new user has no identity: signup works anonymously (over TLS to the CA).
    let mut anonymous = cluster.anonymous().await;
    let status = anonymous.status(proto::StatusRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // The invite says whom it is for and the TOTP secret bound to it, without spending it.
    let invite = anonymous
        .get_signup(proto::GetSignupRequest {
            token: dave.signup_token.clone(),
            client_addr: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("get signup: {status:?}"))
        .into_inner();
    assert_eq!(invite.user, "dave");
    assert!(
        invite.otpauth_uri.starts_with("otpauth://totp/"),
        "{invite:?}"
    );
    // No code, or a wrong one: refused, and the invite still works.
    for otp in ["", "000000x", &wrong_code(&invite.otpauth_uri)] {
        let refused = anonymous
            .complete_signup(signup_request(&dave.signup_token, PASSWORD, otp))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{otp:?}: {refused:?}"
        );
        assert!(refused.message().contains("code"), "{refused:?}");
    }
    let done = anonymous
        .complete_signup(signup_request(
            &dave.signup_token,
            PASSWORD,
            &totp_now(&invite.otpauth_uri),
        ))
        .await
        .unwrap_or_else(|status| panic!("signup: {status:?}"))
        .into_inner();
    assert_eq!(done.user, "dave");
    assert_eq!(
        done.otpauth_uri, invite.otpauth_uri,
        "the secret bound to the invite"
    );
    totp_rs::Totp::from_url(&done.otpauth_uri).unwrap();
    // The used invite is gone for reading too.
    let gone = anonymous
        .get_signup(proto::GetSignupRequest {
            token: dave.signup_token.clone(),
            client_addr: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::PermissionDenied, "{gone:?}");

    // The token is spent.
    let again = anonymous
        .complete_signup(signup_request(
            &dave.signup_token,
            "another long password",
            &totp_now(&invite.otpauth_uri),
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::PermissionDenied, "{again:?}");
    assert!(again.message().contains("already used"), "{again:?}");

    // A reset gives a new token; a too-short password is refused without spending it.
    let reset = admin
        .reset_user(proto::ResetUserRequest {
            name: "dave".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.signup_token.len(), 64);
    assert_ne!(reset.signup_token, dave.signup_token);
    let reinvite = anonymous
        .get_signup(proto::GetSignupRequest {
            token: reset.signup_token.clone(),
            client_addr: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        reinvite.otpauth_uri, invite.otpauth_uri,
        "a fresh TOTP secret"
    );
    let short = anonymous
        .complete_signup(signup_request(
            &reset.signup_token,
            "short",
            &totp_now(&reinvite.otpauth_uri),
        ))
        .await
        .unwrap_err();
    assert_eq!(short.code(), Code::InvalidArgument, "{short:?}");
    assert!(short.message().contains("at least 12"), "{short:?}");
    let new_password = "a much better passphrase";
    let redone = anonymous
        .complete_signup(signup_request(
            &reset.signup_token,
            new_password,
            &totp_now(&reinvite.otpauth_uri),
        ))
        .await
        .unwrap_or_else(|status| panic!("signup after a refused password: {status:?}"))
        .into_inner();
    assert_eq!(redone.user, "dave");
    assert_ne!(redone.otpauth_uri, done.otpauth_uri, "a fresh TOTP secret");

    // The password and the code from this signup log in; the first signup's do not
    // (one login each: a refused attempt does not use up the code's time step). The code
    // that confirmed the enrolment is spent: a login needs the next one (accepted a step
    // early, as every code is).
    let next_step = SystemTime::now() + Duration::from_secs(30);
    let old = admin
        .login(login_request(
            "dave",
            PASSWORD,
            &totp_at(&done.otpauth_uri, next_step),
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated, "{old:?}");
    let replayed = admin
        .login(login_request(
            "dave",
            new_password,
            &totp_now(&redone.otpauth_uri),
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        replayed.code(),
        Code::Unauthenticated,
        "the confirming code is spent"
    );
    let login = admin
        .login(login_request(
            "dave",
            new_password,
            &totp_at(&redone.otpauth_uri, next_step),
            "",
        ))
        .await
        .unwrap_or_else(|status| panic!("login with the new password: {status:?}"))
        .into_inner();
    assert_eq!(login.principals, vec!["dave".to_string()]);

    // Audited: two password changes by signup token, the refused codes and reuse.
    let changes = events(&mut admin, &["user.password_change"]).await;
    let by_token: Vec<&Value> = changes
        .iter()
        .filter(|e| field(e, "method") == "signup_token")
        .collect();
    assert_eq!(
        by_token.iter().filter(|e| !failed(e)).count(),
        2,
        "{changes:#?}"
    );
    assert!(by_token.iter().any(|e| failed(e)), "{changes:#?}");
    let text = serde_json::to_string(&changes).unwrap();
    assert!(
        !text.contains(&dave.signup_token),
        "a token value was audited"
    );
    assert!(!text.contains(new_password), "a password was audited");
}

#[tokio::test]
async fn changing_a_users_roles_takes_effect_on_their_certificate() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    create_user(&mut admin, "erin", &["editor"], &[], "").await;
    let mut erin = user_identity(&cluster, &mut admin, "erin").await;
    let demoted = r#"{"kind":"user","version":"v2","metadata":{"name":"erin"},
        "spec":{"roles":["access"],"traits":{"logins":["erin"]}}}"#;
    admin
        .upsert_resource(proto::UpsertResourceRequest {
            document: demoted.to_string(),
            source_name: "erin.json".to_string(),
            force: true,
        })
        .await
        .unwrap();
    let mut seen = false;
    for _ in 0..50 {
        let docs = admin
            .get_resources(proto::GetResourcesRequest {
                kind: "user".to_string(),
                name: "erin".to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .documents;
        let user: Value = serde_json::from_str(&docs[0]).unwrap();
        if user["spec"]["roles"] == serde_json::json!(["access"]) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the demotion never showed");
    let refused = erin
        .create_user(proto::CreateUserRequest {
            name: "erin2".to_string(),
            roles: vec!["editor".to_string()],
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

#[tokio::test]
async fn a_join_refused_for_an_unusable_key_is_not_audited_as_a_success() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let pins = ca_pins(&mut admin).await;
    let token = join_token(&mut admin, "node").await;
    let mut keys = fresh_keys();
    keys.tls_public_pem =
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_string();
    let refused = cluster
        .pinned(&pins)
        .await
        .join(join_request(&token.token, "node", "badtls", &keys))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let audited = events(&mut admin, &["instance.join", "cert.create"]).await;
    assert!(
        !audited.iter().any(|e| !failed(e)
            && (field(e, "node_name") == "badtls" || field(e, "server_id") == "badtls-uuid")),
        "{audited:#?}"
    );
}

/// Nodes report their sessions' events and upload recordings; nobody else may, and a
/// node can neither forge another server's id nor write other kinds of events.
#[tokio::test]
async fn nodes_report_sessions_and_upload_recordings_for_auditors() {
    use jumpgate_audit::{AuditEvent, EventType};
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let mut node = join_as(&cluster, &mut admin, "node", "web-9").await;

    let start = AuditEvent::success(EventType::SessionStart)
        .user("alice")
        .login("root")
        .session_id("6f1c2a4e-0000-4000-8000-000000000001")
        .server_id("forged-server");
    node.emit_events(proto::EmitEventsRequest {
        events: vec![serde_json::to_string(&start).unwrap()],
    })
    .await
    .unwrap();
    let found = events(&mut admin, &["session.start"]).await;
    let ours: Vec<&Value> = found
        .iter()
        .filter(|e| field(e, "sid") == "6f1c2a4e-0000-4000-8000-000000000001")
        .collect();
    assert_eq!(ours.len(), 1, "{found:?}");
    let server_id = field(ours[0], "server_id");
    assert!(
        !server_id.is_empty() && server_id != "forged-server",
        "{server_id}"
    );

    // Other kinds of events, and garbage, are refused and write nothing.
    let forged = AuditEvent::success(EventType::UserCreate).user("mallory");
    let refused = node
        .emit_events(proto::EmitEventsRequest {
            events: vec![serde_json::to_string(&forged).unwrap()],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let garbage = node
        .emit_events(proto::EmitEventsRequest {
            events: vec!["{not json".to_string()],
        })
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
    assert!(
        !events(&mut admin, &["user.create"])
            .await
            .iter()
            .any(|e| field(e, "user") == "mallory")
    );

    // A recording in parts: a gap is refused, a repeated part acknowledged, then complete.
    let sid = "6f1c2a4e-0000-4000-8000-000000000002";
    let other_start = AuditEvent::success(EventType::SessionStart)
        .user("alice")
        .login("root")
        .session_id(sid);
    let cast =
        b"{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.5, \"o\", \"hello\"]\n".to_vec();
    let (first, rest) = cast.split_at(20);
    let upload = |offset: u64, data: &[u8], complete: bool| proto::UploadRecordingRequest {
        session_id: sid.to_string(),
        offset,
        data: data.to_vec(),
        complete,
    };
    // Before its session.start reached auth, an upload is "try again", not lost.
    let early = node
        .upload_recording(upload(0, first, false))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::Unavailable, "{early:?}");
    node.emit_events(proto::EmitEventsRequest {
        events: vec![serde_json::to_string(&other_start).unwrap()],
    })
    .await
    .unwrap();
    let stored = node
        .upload_recording(upload(0, first, false))
        .await
        .unwrap();
    assert_eq!(stored.into_inner().stored, 20);

    // Another node can neither write to this session's recording nor speak for it,
    // nor claim it with a session.start of its own.
    let mut intruder = join_as(&cluster, &mut admin, "node", "web-10").await;
    let overwrite = intruder
        .upload_recording(upload(20, rest, true))
        .await
        .unwrap_err();
    assert_eq!(overwrite.code(), Code::PermissionDenied, "{overwrite:?}");
    for event in [
        other_start.clone(),
        AuditEvent::success(EventType::SessionEnd).session_id(sid),
    ] {
        let forged = intruder
            .emit_events(proto::EmitEventsRequest {
                events: vec![serde_json::to_string(&event).unwrap()],
            })
            .await
            .unwrap_err();
        assert_eq!(forged.code(), Code::PermissionDenied, "{forged:?}");
    }
    let gap = node
        .upload_recording(upload(30, rest, false))
        .await
        .unwrap_err();
    assert_eq!(gap.code(), Code::InvalidArgument, "{gap:?}");
    let again = node
        .upload_recording(upload(0, first, false))
        .await
        .unwrap();
    assert_eq!(again.into_inner().stored, 20);
    let done = node.upload_recording(upload(20, rest, true)).await.unwrap();
    assert_eq!(done.into_inner().stored, cast.len() as u64);
    let bad_id = node
        .upload_recording(proto::UploadRecordingRequest {
            session_id: "../../etc/passwd".to_string(),
            ..upload(0, first, false)
        })
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument, "{bad_id:?}");

    // Reading needs the session rule: auditor yes, access no; users cannot upload.
    create_user(&mut admin, "ada", &["auditor"], &[], PASSWORD).await;
    create_user(&mut admin, "carl", &["access"], &["root"], PASSWORD).await;
    let mut auditor = user_identity(&cluster, &mut admin, "ada").await;
    let listed = auditor
        .list_recordings(proto::ListRecordingsRequest {})
        .await
        .unwrap()
        .into_inner()
        .recordings;
    assert!(
        listed.iter().any(|r| r.session_id == sid && r.completed),
        "{listed:?}"
    );
    let read = auditor
        .get_recording(proto::GetRecordingRequest {
            session_id: sid.to_string(),
            offset: 0,
            max_len: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.data, cast);
    let mut user = user_identity(&cluster, &mut admin, "carl").await;
    let denied = user
        .get_recording(proto::GetRecordingRequest {
            session_id: sid.to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let upload_denied = user
        .upload_recording(upload(0, first, false))
        .await
        .unwrap_err();
    assert_eq!(
        upload_denied.code(),
        Code::PermissionDenied,
        "{upload_denied:?}"
    );
    let emit_denied = user
        .emit_events(proto::EmitEventsRequest {
            events: vec![serde_json::to_string(&start).unwrap()],
        })
        .await
        .unwrap_err();
    assert_eq!(
        emit_denied.code(),
        Code::PermissionDenied,
        "{emit_denied:?}"
    );

    // Users see the nodes their roles reach: the dev host's own node for `access` with
    // a login, none for `auditor`, which has no logins.
    let sees = |mut client: AuthClient| async move {
        client
            .get_resources(proto::GetResourcesRequest {
                kind: "node".to_string(),
                name: String::new(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .documents
            .len()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut visible = false;
    while !visible && tokio::time::Instant::now() < deadline {
        visible = sees(user.clone()).await > 0;
        if !visible {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(visible, "the access user never saw the dev node");
    assert_eq!(sees(auditor).await, 0);
    drop(cluster.daemon);
}

/// Auth decides a host's identity: a node join token buys neither a name reserved for
/// the cluster's services nor another host's UUID, and every such attempt is audited.
#[tokio::test]
async fn a_node_token_buys_no_service_name_and_no_other_hosts_uuid() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let pins = ca_pins(&mut admin).await;
    let cluster_name = admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .cluster_name;

    // Reserved names, as the host name or as an address, are refused before the
    // token is spent; the message names the field.
    let reserved: [(&str, Vec<&str>, &str); 6] = [
        ("jumpgate.cluster.local", vec![], "host_name"),
        ("evil", vec!["jumpgate.cluster.local"], "addresses"),
        ("evil", vec!["proxy.jumpgate.cluster.local"], "addresses"),
        ("evil", vec!["x.jumpgate.cluster.local"], "addresses"),
        ("evil", vec!["localhost"], "addresses"),
        ("evil", vec![cluster_name.as_str()], "addresses"),
    ];
    let token = join_token(&mut admin, "node").await.token;
    for (host_name, addresses, field_name) in reserved {
        let keys = fresh_keys();
        let mut request = join_request(&token, "node", host_name, &keys);
        request.addresses = addresses.iter().map(ToString::to_string).collect();
        let err = cluster.pinned(&pins).await.join(request).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{host_name}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field_name}:")),
            "{host_name} {addresses:?}: {err:?}"
        );
    }
    let refusals = events(&mut admin, &["auth"]).await;
    assert!(
        refusals
            .iter()
            .filter(|e| failed(e) && field(e, "method") == "Join")
            .count()
            >= 6,
        "every refused name is audited: {refusals:#?}"
    );

    // The token was not spent by the refusals: the victim joins with it.
    let victim_keys = fresh_keys();
    let mut request = join_request(&token, "node", "victim", &victim_keys);
    request.host_uuid = "victim-uuid".to_string();
    let victim = cluster
        .pinned(&pins)
        .await
        .join(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(victim.host_uuid, "victim-uuid");
    assert!(
        tls_identity(&victim.tls_certificate_pem)
            .0
            .contains("/node/victim-uuid?")
    );

    // Lifetimes: a host certificate lives 30 days (hosts renew it), the admin identity
    // a day (re-issued while auth runs), so neither is good for a year once copied.
    let lifetime = |pem: &str| {
        let (from, until) = jumpgate_pki::cert_validity(pem).unwrap();
        until.duration_since(from).unwrap()
    };
    let day = Duration::from_secs(24 * 3600);
    let host_life = lifetime(&victim.tls_certificate_pem);
    assert!(
        host_life <= 30 * day + Duration::from_secs(120),
        "{host_life:?}"
    );
    let admin_life = lifetime(&cluster.admin_file("cert.pem"));
    assert!(
        admin_life <= day + Duration::from_secs(120),
        "{admin_life:?}"
    );

    // Another token holder asks for the victim's UUID: it gets a UUID of its own, and
    // neither its X.509 nor its SSH certificate names the victim's.
    let attacker_token = join_token(&mut admin, "node").await.token;
    let attacker_keys = fresh_keys();
    let mut request = join_request(&attacker_token, "node", "victim", &attacker_keys);
    request.host_uuid = "victim-uuid".to_string();
    let attacker = cluster
        .pinned(&pins)
        .await
        .join(request)
        .await
        .unwrap()
        .into_inner();
    assert_ne!(attacker.host_uuid, "victim-uuid");
    assert!(!attacker.host_uuid.is_empty());
    let (uri, _) = tls_identity(&attacker.tls_certificate_pem);
    assert!(
        uri.contains(&format!("/node/{}?", attacker.host_uuid)),
        "{uri}"
    );
    let ssh = Certificate::from_openssh(&attacker.ssh_host_certificate).unwrap();
    assert!(
        !ssh.valid_principals()
            .iter()
            .any(|p| p.contains("victim-uuid")),
        "{:?}",
        ssh.valid_principals()
    );
    let claims = events(&mut admin, &["instance.join"]).await;
    assert!(
        claims
            .iter()
            .any(|e| failed(e) && field(e, "requested_host_uuid") == "victim-uuid"),
        "the claim is audited: {claims:#?}"
    );

    // The victim renews with new keys and keeps its UUID (from its certificate).
    let victim_client = cluster
        .connect_as(&victim.tls_certificate_pem, &victim_keys.tls_private_pem)
        .await;
    let renew_keys = fresh_keys();
    let renewed = victim_client
        .clone()
        .renew_host(proto::RenewHostRequest {
            host_name: "victim".to_string(),
            ssh_public_key: renew_keys.ssh_public.clone(),
            tls_public_key_pem: renew_keys.tls_public_pem.clone(),
            addresses: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.host_uuid, "victim-uuid");

    // A renewal asking for a reserved name is refused like a join.
    let err = victim_client
        .clone()
        .renew_host(proto::RenewHostRequest {
            host_name: "victim".to_string(),
            ssh_public_key: renew_keys.ssh_public.clone(),
            tls_public_key_pem: renew_keys.tls_public_pem.clone(),
            addresses: vec!["jumpgate.cluster.local".to_string()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    drop(cluster);
}

/// A recording as a node uploads it: a header naming the session's user, one output event.
fn recording_of(sid: &str, user: &str, login: &str) -> Vec<u8> {
    let header = serde_json::json!({
        "version": 2, "width": 80, "height": 24,
        "jumpgate": {
            "session_id": sid, "user": user, "login": login,
            "node": "web-9", "node_uuid": "web-9-uuid", "cluster": "test",
        },
    });
    format!("{header}\n[0.5, \"o\", \"{user} was here\"]\n").into_bytes()
}

/// A session as a node reports it: `session.start`, then the recording in one part.
async fn record_session(node: &mut AuthClient, sid: &str, user: &str, login: &str) -> Vec<u8> {
    use jumpgate_audit::{AuditEvent, EventType};
    let start = AuditEvent::success(EventType::SessionStart)
        .user(user)
        .login(login)
        .session_id(sid);
    node.emit_events(proto::EmitEventsRequest {
        events: vec![serde_json::to_string(&start).unwrap()],
    })
    .await
    .unwrap();
    let cast = recording_of(sid, user, login);
    node.upload_recording(proto::UploadRecordingRequest {
        session_id: sid.to_string(),
        offset: 0,
        data: cast.clone(),
        complete: true,
    })
    .await
    .unwrap();
    cast
}

async fn listed(client: &mut AuthClient) -> Result<BTreeSet<String>, tonic::Status> {
    Ok(client
        .list_recordings(proto::ListRecordingsRequest {})
        .await?
        .into_inner()
        .recordings
        .into_iter()
        .map(|r| r.session_id)
        .collect())
}

async fn play(client: &mut AuthClient, sid: &str) -> Result<Vec<u8>, tonic::Status> {
    Ok(client
        .get_recording(proto::GetRecordingRequest {
            session_id: sid.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .data)
}

/// Rules' `where`: the built-in `access` role lists and plays the user's own recordings and
/// nobody else's (Teleport's `contains(session.participants, user.metadata.name)`); an
/// auditor sees them all; a deny with `where` refuses only where it holds; a role whose
/// `where` does not parse is refused when it is created.
#[tokio::test]
async fn the_access_role_sees_only_its_users_recordings() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let mut node = join_as(&cluster, &mut admin, "node", "web-9").await;
    let hers = "7a1c2a4e-0000-4000-8000-00000000a11c";
    let his = "7a1c2a4e-0000-4000-8000-000000000b0b";
    let root = "7a1c2a4e-0000-4000-8000-0000000000f0";
    let anonymous = "7a1c2a4e-0000-4000-8000-000000000000";
    let alice_cast = record_session(&mut node, hers, "alice", "alice").await;
    let bob_cast = record_session(&mut node, his, "bob", "bob").await;
    record_session(&mut node, root, "bob", "root").await;
    // A recording whose header names nobody: no rule with `where` can match it.
    let started = jumpgate_audit::AuditEvent::success(jumpgate_audit::EventType::SessionStart)
        .session_id(anonymous);
    node.emit_events(proto::EmitEventsRequest {
        events: vec![serde_json::to_string(&started).unwrap()],
    })
    .await
    .unwrap();
    node.upload_recording(proto::UploadRecordingRequest {
        session_id: anonymous.to_string(),
        offset: 0,
        data: b"{\"version\": 2, \"width\": 80, \"height\": 24}\n".to_vec(),
        complete: true,
    })
    .await
    .unwrap();

    create_user(&mut admin, "alice", &["access"], &["alice"], PASSWORD).await;
    create_user(&mut admin, "bob", &["access"], &["bob"], PASSWORD).await;
    create_user(&mut admin, "ada", &["auditor"], &[], PASSWORD).await;
    create_user(&mut admin, "ed", &["editor"], &[], PASSWORD).await;
    let mut alice = user_identity(&cluster, &mut admin, "alice").await;
    let mut bob = user_identity(&cluster, &mut admin, "bob").await;
    let mut ada = user_identity(&cluster, &mut admin, "ada").await;
    let mut ed = user_identity(&cluster, &mut admin, "ed").await;

    // Each `access` user lists and plays their own sessions only.
    assert_eq!(
        listed(&mut alice).await.unwrap(),
        BTreeSet::from([hers.to_string()])
    );
    assert_eq!(
        listed(&mut bob).await.unwrap(),
        BTreeSet::from([his.to_string(), root.to_string()])
    );
    assert_eq!(play(&mut alice, hers).await.unwrap(), alice_cast);
    assert_eq!(play(&mut bob, his).await.unwrap(), bob_cast);
    for sid in [his, root, anonymous, "7a1c2a4e-0000-4000-8000-00000000dead"] {
        let denied = play(&mut alice, sid).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{sid}: {denied:?}");
        assert!(
            denied
                .message()
                .contains("no role allows `read` on this `session`"),
            "{denied:?}"
        );
    }
    // The refusal is audited, naming the user, the call and the session.
    let refusals = events(&mut admin, &["auth"]).await;
    assert!(
        refusals.iter().any(|e| failed(e)
            && field(e, "user") == "alice"
            && field(e, "method") == "GetRecording"
            && field(e, "error").contains(his)),
        "{refusals:?}"
    );

    // The auditor sees everything; a user whose roles cover no session, nothing.
    let all = listed(&mut ada).await.unwrap();
    for sid in [hers, his, root, anonymous] {
        assert!(all.contains(sid), "{sid}: {all:?}");
    }
    assert_eq!(play(&mut ada, his).await.unwrap(), bob_cast);
    let missing = play(&mut ada, "7a1c2a4e-0000-4000-8000-00000000dead")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let none = listed(&mut ed).await.unwrap_err();
    assert_eq!(none.code(), Code::PermissionDenied, "{none:?}");

    // A deny with `where` refuses only where it holds, and beats the auditor's allow.
    let no_root = r#"{"kind":"role","version":"v7","metadata":{"name":"no-root-playback"},
        "spec":{"deny":{"rules":[{"resources":["session"],"verbs":["read"],
        "where":"equals(session.login, \"root\")"}]}}}"#;
    admin
        .upsert_resource(proto::UpsertResourceRequest {
            document: no_root.to_string(),
            source_name: "no-root.json".to_string(),
            force: false,
        })
        .await
        .unwrap();
    create_user(
        &mut admin,
        "aud",
        &["auditor", "no-root-playback"],
        &[],
        PASSWORD,
    )
    .await;
    let mut aud = user_identity(&cluster, &mut admin, "aud").await;
    assert!(listed(&mut aud).await.unwrap().contains(root));
    assert_eq!(play(&mut aud, his).await.unwrap(), bob_cast);
    let denied = play(&mut aud, root).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied
            .message()
            .contains("role `no-root-playback` denies `read` on `session`"),
        "{denied:?}"
    );

    // Events too: a role that lists only the events about its user.
    let own_events = r#"{"kind":"role","version":"v7","metadata":{"name":"own-events"},
        "spec":{"allow":{"rules":[{"resources":["event"],"verbs":["list"],
        "where":"equals(event.user, user.metadata.name)"}]}}}"#;
    admin
        .upsert_resource(proto::UpsertResourceRequest {
            document: own_events.to_string(),
            source_name: "own-events.json".to_string(),
            force: false,
        })
        .await
        .unwrap();
    create_user(
        &mut admin,
        "eve",
        &["access", "own-events"],
        &["eve"],
        PASSWORD,
    )
    .await;
    let eves = "7a1c2a4e-0000-4000-8000-000000000e0e";
    record_session(&mut node, eves, "eve", "eve").await;
    let mut eve = user_identity(&cluster, &mut admin, "eve").await;
    let seen: Vec<Value> = events(&mut eve, &["session.start", "user.create"]).await;
    assert!(seen.iter().any(|e| field(e, "sid") == eves), "{seen:?}");
    assert!(seen.iter().all(|e| field(e, "user") == "eve"), "{seen:?}");
    assert!(events(&mut ada, &["session.start"]).await.len() >= 4);
    let none = alice
        .search_events(proto::SearchEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::PermissionDenied, "{none:?}");

    // A `where` that does not parse is refused when the role is created, naming the rule.
    let typo = r#"{"kind":"role","version":"v7","metadata":{"name":"typo"},
        "spec":{"allow":{"rules":[{"resources":["session"],"verbs":["list"],
        "where":"contains(session.participant, user.metadata.name)"}]}}}"#;
    let refused = admin
        .upsert_resource(proto::UpsertResourceRequest {
            document: typo.to_string(),
            source_name: "typo.json".to_string(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("spec.allow.rules[0].where")
            && refused
                .message()
                .contains("did you mean `session.participants`?"),
        "{refused:?}"
    );
    drop(cluster.daemon);
}

/// Every size has a limit: an auth API message over 4 MiB (a resource document, a
/// recording part) and a web API body over 64 KiB are refused with a clear status, and
/// the services go on serving.
#[tokio::test]
async fn oversized_requests_are_refused_and_the_services_go_on() {
    use jumpgate_audit::{AuditEvent, EventType};
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let five_mib = 5 * 1024 * 1024;

    // The server's limit, not the client's: this client would send anything.
    let err = admin
        .clone()
        .max_encoding_message_size(usize::MAX)
        .upsert_resource(proto::UpsertResourceRequest {
            document: "x".repeat(five_mib),
            source_name: "huge.yaml".to_string(),
            force: false,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    admin.status(proto::StatusRequest {}).await.unwrap();
    // jctl says so before sending, in words.
    let huge = cluster.data.join("huge.yaml");
    std::fs::write(&huge, "x".repeat(five_mib)).unwrap();
    let out = support::jctl(&cluster.data, &["create", huge.to_str().unwrap()], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("takes resources of at most"), "{stderr}");

    let mut node = join_as(&cluster, &mut admin, "node", "web-11").await;
    let sid = "6f1c2a4e-0000-4000-8000-00000000b16b";
    let start = AuditEvent::success(EventType::SessionStart).session_id(sid);
    node.emit_events(proto::EmitEventsRequest {
        events: vec![serde_json::to_string(&start).unwrap()],
    })
    .await
    .unwrap();
    let err = node
        .clone()
        .max_encoding_message_size(usize::MAX)
        .upload_recording(proto::UploadRecordingRequest {
            session_id: sid.to_string(),
            offset: 0,
            data: vec![b'x'; five_mib],
            complete: false,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );

    let proxy = read(&cluster.data.join("proxy_addr")).trim().to_string();
    let body = format!("{{\"user\": \"{}\"}}", "a".repeat(100 * 1024));
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ])
        .arg(format!("https://{proxy}/webapi/login"))
        .output()
        .expect("curl (./test.sh installs it)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413");
    admin.status(proto::StatusRequest {}).await.unwrap();
}

/// A local relay to the auth API that opens every connection with a PROXY header signed
/// by `signer`, claiming `client`: what a proxy does, with whichever identity the test
/// chooses. Returns the relay's address.
async fn signing_relay(auth_addr: &str, signer: ForwardSigner, client: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = listener.local_addr().unwrap().to_string();
    let auth_addr = auth_addr.to_string();
    let client: std::net::SocketAddr = client.parse().unwrap();
    let signer = Arc::new(signer);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let auth_addr = auth_addr.clone();
            let signer = signer.clone();
            tokio::spawn(async move {
                let mut upstream = tokio::net::TcpStream::connect(&auth_addr).await.unwrap();
                let header = signer
                    .header(client, upstream.peer_addr().unwrap(), SystemTime::now())
                    .unwrap();
                tokio::io::AsyncWriteExt::write_all(&mut upstream, &header)
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream).await;
            });
        }
    });
    relay
}

/// Joins attempted with a token that does not exist, through `addr`, from `source`.
async fn bogus_join(addr: &str, pins: &[String], source: &str) -> tonic::Status {
    let tls = jumpgate_api::tls::pinned_client_config(pins).unwrap();
    let mut host = jumpgate_api::connect_from(
        addr,
        tls,
        jumpgate_api::DialOptions {
            local_ip: Some(source.parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    host.join(join_request("not-a-token", "node", "bogus", &fresh_keys()))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn the_proxy_tells_auth_the_real_client_of_a_passed_through_connection() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let pins = ca_pins(&mut admin).await;
    let proxy = read(&cluster.data.join("proxy_addr")).trim().to_string();

    // Through the proxy's public port from 127.0.0.9: the join rate limit is that
    // client's own, and the audit log names it.
    let mut last = None;
    for _ in 0..30 {
        let refused = bogus_join(&proxy, &pins, "127.0.0.9").await;
        if refused.code() == Code::ResourceExhausted {
            last = Some(refused);
            break;
        }
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    }
    let limited = last.expect("30 bad joins in a row were never rate limited");
    assert!(limited.message().contains("from 127.0.0.9"), "{limited:?}");
    let other = bogus_join(&proxy, &pins, "127.0.0.10").await;
    assert_eq!(
        other.code(),
        Code::PermissionDenied,
        "another client behind the same proxy must not share the limit: {other:?}"
    );
    let joins = events(&mut admin, &["instance.join"]).await;
    for source in ["127.0.0.9:", "127.0.0.10:"] {
        assert!(
            joins
                .iter()
                .any(|event| failed(event) && field(event, "addr.remote").starts_with(source)),
            "no failed join audited from {source}: {joins:#?}"
        );
    }

    // A header signed by a node (a valid cluster identity, not a proxy) buys nothing.
    let node = joined_credentials(&cluster, &mut admin, "node", "forger").await;
    let relay = signing_relay(
        &cluster.addr,
        ForwardSigner::new(&node).unwrap(),
        "198.51.100.7:4000",
    )
    .await;
    let forged = bogus_join(&relay, &pins, "127.0.0.1").await;
    assert_eq!(forged.code(), Code::Unauthenticated, "{forged:?}");
    assert!(
        forged.message().contains("not signed by a proxy"),
        "{forged:?}"
    );

    // The same header signed by a proxy identity is taken.
    let proxy_identity = joined_credentials(&cluster, &mut admin, "proxy", "proxy9").await;
    let relay = signing_relay(
        &cluster.addr,
        ForwardSigner::new(&proxy_identity).unwrap(),
        "198.51.100.8:4000",
    )
    .await;
    let taken = bogus_join(&relay, &pins, "127.0.0.1").await;
    assert_eq!(taken.code(), Code::PermissionDenied, "{taken:?}");
    let joins = events(&mut admin, &["instance.join"]).await;
    assert!(
        joins
            .iter()
            .any(|event| field(event, "addr.remote") == "198.51.100.8:4000"),
        "{joins:#?}"
    );
    assert!(
        !joins
            .iter()
            .any(|event| field(event, "addr.remote").starts_with("198.51.100.7")),
        "a node's header was believed: {joins:#?}"
    );
}

/// The next event of a watch stream (failing the test after 5 s).
async fn next_event(
    stream: &mut tonic::Streaming<proto::WatchEvent>,
) -> Result<proto::WatchEvent, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("no watch event within 5 s")
        .map(|event| event.expect("the watch ended"))
}

/// Reads a snapshot up to READY: the names it held.
async fn snapshot(stream: &mut tonic::Streaming<proto::WatchEvent>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    loop {
        let event = next_event(stream).await.unwrap();
        match event.op() {
            proto::watch_event::Op::Put => {
                names.insert(event.name);
            }
            proto::watch_event::Op::Ready => return names,
            proto::watch_event::Op::Delete => panic!("a delete in the snapshot: {event:?}"),
        }
    }
}

fn role_document(name: &str, login: &str) -> String {
    format!(
        r#"{{"kind":"role","version":"v7","metadata":{{"name":"{name}"}},"spec":{{"allow":{{"logins":["{login}"]}}}}}}"#
    )
}

#[tokio::test]
async fn watch_streams_a_snapshot_then_changes_in_order_to_the_services_that_may_see_them() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let node_credentials = joined_credentials(&cluster, &mut admin, "node", "watcher").await;
    let (node_uri, _) = tls_identity_der(node_credentials.leaf().unwrap());
    let mut node = jumpgate_api::connect(&cluster.addr, node_credentials.client_config().unwrap())
        .await
        .unwrap();
    let mut proxy = join_as_proxy(&cluster, &mut admin).await;
    create_user(&mut admin, "wanda", &["access"], &["root"], PASSWORD).await;

    let watch = |kind: &str| proto::WatchRequest {
        kind: kind.to_string(),
    };
    // Roles: the snapshot, then a create, a change and a delete, in that order.
    let mut roles = node.watch(watch("role")).await.unwrap().into_inner();
    let names = snapshot(&mut roles).await;
    assert!(names.contains("access"), "{names:?}");
    for (document, force) in [
        (role_document("w1", "one"), false),
        (role_document("w1", "two"), true),
    ] {
        admin
            .upsert_resource(proto::UpsertResourceRequest {
                document,
                source_name: "w1.json".to_string(),
                force,
            })
            .await
            .unwrap();
    }
    admin
        .delete_resource(proto::DeleteResourceRequest {
            kind: "role".to_string(),
            name: "w1".to_string(),
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut roles).await.unwrap();
        let login = serde_json::from_str::<Value>(&event.document)
            .ok()
            .and_then(|document| {
                document["spec"]["allow"]["logins"][0]
                    .as_str()
                    .map(String::from)
            })
            .unwrap_or_default();
        seen.push(format!("{:?} {} {login}", event.op(), event.name));
    }
    assert_eq!(seen, ["Put w1 one", "Put w1 two", "Delete w1 "]);

    // Users, as services see them: roles and traits, never secrets.
    let mut users = node.watch(watch("user")).await.unwrap().into_inner();
    let mut wanda = None;
    loop {
        let event = next_event(&mut users).await.unwrap();
        if event.op() == proto::watch_event::Op::Ready {
            break;
        }
        if event.name == "wanda" {
            wanda = Some(event.document);
        }
    }
    let wanda = wanda.expect("wanda is in the snapshot");
    assert!(wanda.contains("\"access\""), "{wanda}");
    for secret in ["hash", "argon", "totp", "password"] {
        assert!(!wanda.to_lowercase().contains(secret), "{wanda}");
    }

    // Scoping: a node may not watch nodes or proxies, a user nothing; a proxy watches nodes.
    for kind in ["node", "proxy"] {
        let refused = node.watch(watch(kind)).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{kind}: {refused:?}"
        );
    }
    let mut user = user_identity(&cluster, &mut admin, "wanda").await;
    let refused = user.watch(watch("role")).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let unknown = proxy.watch(watch("token")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");
    let mut nodes = proxy.watch(watch("node")).await.unwrap().into_inner();
    snapshot(&mut nodes).await;

    // A lock on the node ends its streams at the next change.
    let node_uuid = node_uri
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let mut locks = node.watch(watch("lock")).await.unwrap().into_inner();
    snapshot(&mut locks).await;
    admin
        .upsert_resource(proto::UpsertResourceRequest {
            document: format!(
                r#"{{"kind":"lock","version":"v2","metadata":{{"name":"cut-watcher"}},"spec":{{"target":{{"node":"{node_uuid}"}}}}}}"#
            ),
            source_name: "lock.json".to_string(),
            force: false,
        })
        .await
        .unwrap();
    let ended = next_event(&mut locks).await.unwrap_err();
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
}

/// Web sessions hold a user's keys: only proxies may make, read or end them. A node (a
/// join token's holder, or a compromised host) or a user is refused even with the session's
/// id in hand, and a made-up id reads as an ended session.
#[tokio::test]
async fn web_sessions_are_for_proxies_only() {
    let cluster = Cluster::start();
    let mut admin = cluster.admin().await;
    let wes = create_user(&mut admin, "wes", &["access"], &["wes"], PASSWORD).await;
    let mut proxy = join_as_proxy(&cluster, &mut admin).await;
    let session = proxy
        .create_web_session(proto::CreateWebSessionRequest {
            user: "wes".to_string(),
            password: PASSWORD.to_string(),
            otp: totp_now(&wes.otpauth_uri),
            client_addr: "198.51.100.7:40000".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.user, "wes");
    assert!(session.ssh_private_key.contains("PRIVATE KEY"));
    assert_eq!(session.id.len(), 64);

    let mut node = join_as(&cluster, &mut admin, "node", "web-node").await;
    let mut user = user_identity(&cluster, &mut admin, "wes").await;
    for (who, client) in [("node", &mut node), ("user", &mut user)] {
        let get = client
            .get_web_session(proto::GetWebSessionRequest {
                id: session.id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(get.code(), Code::PermissionDenied, "{who}: {get:?}");
        let create = client
            .create_web_session(proto::CreateWebSessionRequest {
                user: "wes".to_string(),
                password: PASSWORD.to_string(),
                otp: String::new(),
                client_addr: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(create.code(), Code::PermissionDenied, "{who}: {create:?}");
        let delete = client
            .delete_web_session(proto::DeleteWebSessionRequest {
                id: session.id.clone(),
                all_of_user: true,
                client_addr: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(delete.code(), Code::PermissionDenied, "{who}: {delete:?}");
    }
    let made_up = proxy
        .get_web_session(proto::GetWebSessionRequest {
            id: "ab".repeat(32),
        })
        .await
        .unwrap_err();
    assert_eq!(made_up.code(), Code::Unauthenticated, "{made_up:?}");
    // The session itself is untouched by the refusals.
    let again = proxy
        .get_web_session(proto::GetWebSessionRequest {
            id: session.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.csrf_token, session.csrf_token);
}
