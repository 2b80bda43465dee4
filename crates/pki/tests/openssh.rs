//! Certificates from `jumpgate-pki` against real OpenSSH: an `sshd` that trusts the
//! exported user CA (`TrustedUserCAKeys`) and presents a host certificate from the host
//! CA, and the `ssh` client that trusts the exported `@cert-authority` line.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_pki::{CaKind, HostCertParams, Permissions, SshCa, UserCertParams};
use jumpgate_test_support::{
    KnownHosts, Sshd, SshdConfig, current_user, openssh_to, write_private,
};
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

/// A real sshd (files in `dir`) that trusts `user_ca` and presents a host certificate
/// from `host_ca` for `127.0.0.1` and `node1`.
fn start_sshd(dir: &Path, user_ca: &SshCa, host_ca: &SshCa) -> Sshd {
    std::fs::create_dir_all(dir).unwrap();
    let host_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let host_key_path = dir.join("host_key");
    write_private(
        &host_key_path,
        &host_key.to_openssh(LineEnding::LF).unwrap(),
    );
    let host_cert = host_ca
        .sign_host(
            &HostCertParams {
                public_key: host_key.public_key().clone(),
                host_id: "node-uuid".to_string(),
                principals: vec!["127.0.0.1".to_string(), "node1".to_string()],
                ttl: Duration::from_secs(3600),
            },
            SystemTime::now(),
        )
        .unwrap();
    let host_cert_path = dir.join("host_key-cert.pub");
    std::fs::write(&host_cert_path, host_cert.to_openssh().unwrap()).unwrap();
    let user_ca_path = dir.join("user_ca.pub");
    std::fs::write(&user_ca_path, user_ca.export_openssh().unwrap()).unwrap();
    let config = SshdConfig {
        host_key: host_key_path,
        host_cert: Some(host_cert_path),
        trusted_user_ca_keys: user_ca_path,
        extra: "LogLevel VERBOSE\n".to_string(),
    };
    Sshd::start(dir, "sshd", &config)
}

/// A user's key and certificate on disk, as `jsh` will keep them.
struct Identity {
    key: PathBuf,
    cert: PathBuf,
}

fn identity(
    dir: &Path,
    name: &str,
    key: &PrivateKey,
    ca: &SshCa,
    params: &UserCertParams,
    at: SystemTime,
) -> Identity {
    let key_path = dir.join(name);
    write_private(&key_path, &key.to_openssh(LineEnding::LF).unwrap());
    let cert = ca.sign_user(params, at).unwrap();
    let cert_path = dir.join(format!("{name}-cert.pub"));
    std::fs::write(&cert_path, cert.to_openssh().unwrap()).unwrap();
    Identity {
        key: key_path,
        cert: cert_path,
    }
}

fn ssh(sshd: &Sshd, id: &Identity, login: &str, known_hosts: &Path) -> Output {
    openssh_to(
        sshd.port,
        login,
        &id.key,
        &id.cert,
        KnownHosts::Strict(known_hosts),
    )
    .arg("echo jumpgate-ok")
    .output()
    .unwrap()
}

fn user_params(public_key: &PublicKey, logins: &[&str]) -> UserCertParams {
    UserCertParams {
        public_key: public_key.clone(),
        user: "alice".to_string(),
        logins: logins.iter().map(|l| l.to_string()).collect(),
        roles: vec!["access".to_string()],
        traits: Default::default(),
        ttl: Duration::from_secs(3600),
        permissions: Permissions {
            pty: true,
            port_forwarding: true,
            ..Permissions::default()
        },
        source_address: None,
    }
}

#[test]
fn openssh_accepts_exactly_what_jumpgate_allows() {
    let user_ca = SshCa::generate(CaKind::User, "prod").unwrap();
    let host_ca = SshCa::generate(CaKind::Host, "prod").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sshd = start_sshd(&dir.path().join("sshd"), &user_ca, &host_ca);
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, host_ca.export_openssh().unwrap()).unwrap();
    let login = current_user();
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let now = SystemTime::now();

    // Allowed: the login is a principal, the CA is trusted, the host CA vouches for sshd.
    let good = identity(
        dir.path(),
        "good",
        &key,
        &user_ca,
        &user_params(key.public_key(), &[&login]),
        now,
    );
    let out = ssh(&sshd, &good, &login, &known_hosts);
    assert!(
        out.status.success(),
        "refused a valid certificate: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "jumpgate-ok");

    // Refused: another principal, an expired certificate, another cluster's CA.
    let other_login = identity(
        dir.path(),
        "other",
        &key,
        &user_ca,
        &user_params(key.public_key(), &["someone-else"]),
        now,
    );
    let expired = identity(
        dir.path(),
        "expired",
        &key,
        &user_ca,
        &user_params(key.public_key(), &[&login]),
        now - Duration::from_secs(7200),
    );
    let foreign_ca = SshCa::generate(CaKind::User, "prod").unwrap();
    let foreign = identity(
        dir.path(),
        "foreign",
        &key,
        &foreign_ca,
        &user_params(key.public_key(), &[&login]),
        now,
    );
    let mut pinned_params = user_params(key.public_key(), &[&login]);
    pinned_params.source_address = Some(vec!["10.0.0.0/8".parse().unwrap()]);
    let pinned_elsewhere = identity(dir.path(), "pinned", &key, &user_ca, &pinned_params, now);
    for (case, id) in [
        ("wrong principal", &other_login),
        ("expired", &expired),
        ("another cluster's CA", &foreign),
        ("source-address elsewhere", &pinned_elsewhere),
    ] {
        let out = ssh(&sshd, id, &login, &known_hosts);
        assert_eq!(
            out.status.code(),
            Some(255),
            "{case}: sshd let it in: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // source-address that matches loopback: OpenSSH parses our encoding and lets it in.
    let mut local_params = user_params(key.public_key(), &[&login]);
    local_params.source_address = Some(vec!["127.0.0.1/32".parse().unwrap()]);
    let pinned_here = identity(dir.path(), "local", &key, &user_ca, &local_params, now);
    let out = ssh(&sshd, &pinned_here, &login, &known_hosts);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The client refuses an sshd whose host certificate comes from another cluster.
    let other_hosts = dir.path().join("other_known_hosts");
    let other_host_ca = SshCa::generate(CaKind::Host, "prod").unwrap();
    std::fs::write(&other_hosts, other_host_ca.export_openssh().unwrap()).unwrap();
    let out = ssh(&sshd, &good, &login, &other_hosts);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ssh_keygen_shows_the_intended_principals_and_extensions() {
    let user_ca = SshCa::generate(CaKind::User, "prod").unwrap();
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut params = user_params(key.public_key(), &["alice", "ubuntu"]);
    params.source_address = Some(vec!["192.168.1.0/24".parse().unwrap()]);
    let id = identity(dir.path(), "id", &key, &user_ca, &params, SystemTime::now());
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&id.cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "ssh-ed25519-cert-v01@openssh.com user certificate",
        "Key ID: \"alice\"",
        "alice",
        "ubuntu",
        "source-address 192.168.1.0/24",
        "permit-pty",
        "permit-port-forwarding",
        // ssh-keygen prints extensions it does not know as hex of their SSH string:
        // length 6 + "access", length 4 + "prod".
        "jumpgate-roles@jumpgate UNKNOWN OPTION: 00000006616363657373",
        "jumpgate-cluster@jumpgate UNKNOWN OPTION: 0000000470726f64",
        &user_ca.fingerprint().to_string(),
    ] {
        assert!(
            listing.contains(expected),
            "missing {expected:?} in:\n{listing}"
        );
    }
    assert!(!listing.contains("permit-agent-forwarding"), "{listing}");
}
