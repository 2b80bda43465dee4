//! Certificate issuance throughput: Jumpgate's CAs against OpenSSH's `ssh-keygen -s`,
//! in the same run on the same machine.
//!
//! `cargo run --release -p jumpgate-bench --bin bench-cert_issuance -- [COUNT]`
//!
//! What is compared:
//! - SSH user certificates: `SshCa::sign_user` (in-process, what the auth service does per
//!   login) vs `ssh-keygen -s CA -I id -n login -V +1h key.pub` (OpenSSH's CA signing, as
//!   admins script it: one process per certificate, so it includes process start-up).
//! - SSH verification: `verify_user_cert` (every check a node makes).
//! - TLS identity certificates: `TlsCa::issue` (ECDSA P-256).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jumpgate_pki::ssh_key::{Algorithm, PrivateKey};
use jumpgate_pki::{
    CaKind, IdentityKind, Permissions, SshCa, TlsCa, TlsCertParams, TlsIdentity, UserCertCheck,
    UserCertParams, verify_user_cert,
};
use std::time::{Duration, Instant, SystemTime};

use jumpgate_bench::{rate, ssh_keygen_sign};

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("COUNT must be a number"))
        .unwrap_or(5000);
    let keygen_count = (count / 25).max(20);
    let now = SystemTime::now();
    let ca = SshCa::generate(CaKind::User, "bench").unwrap();
    let user_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let params = UserCertParams {
        public_key: user_key.public_key().clone(),
        user: "alice".to_string(),
        logins: vec!["alice".to_string(), "ubuntu".to_string()],
        roles: vec!["access".to_string()],
        traits: Default::default(),
        ttl: Duration::from_secs(12 * 3600),
        permissions: Permissions {
            pty: true,
            port_forwarding: true,
            ..Permissions::default()
        },
        source_address: None,
    };

    // Jumpgate: SSH user certificates.
    let started = Instant::now();
    let mut certs = Vec::with_capacity(count);
    for _ in 0..count {
        certs.push(ca.sign_user(&params, now).unwrap());
    }
    let sign = started.elapsed();

    // Jumpgate: full verification, as a node does.
    let trusted = ca.trusted_fingerprints();
    let check = UserCertCheck {
        trusted: &trusted,
        cluster: "bench",
        login: "ubuntu",
        client_addr: Some("127.0.0.1".parse().unwrap()),
        now,
    };
    let started = Instant::now();
    for cert in &certs {
        verify_user_cert(cert, &check).unwrap();
    }
    let verify = started.elapsed();

    // Jumpgate: TLS identity certificates.
    let tls = TlsCa::generate("bench", now).unwrap();
    let tls_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let tls_params = TlsCertParams {
        identity: TlsIdentity {
            cluster: "bench".to_string(),
            kind: IdentityKind::User,
            name: "alice".to_string(),
            roles: vec!["access".to_string()],
        },
        public_key_pem: tls_key.public_key_pem(),
        dns_names: vec![],
        ip_addresses: vec![],
        ttl: Duration::from_secs(12 * 3600),
    };
    let started = Instant::now();
    for _ in 0..count {
        tls.issue(&tls_params, now).unwrap();
    }
    let tls_issue = started.elapsed();

    // OpenSSH: ssh-keygen -s with the same CA key and the same user key.
    let keygen = ssh_keygen_sign(
        &ca,
        &user_key.public_key().to_openssh().unwrap(),
        keygen_count,
    );

    let ours = rate(count, sign);
    let theirs = rate(keygen_count, keygen);
    println!(
        "certificate issuance on this machine ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("{:<48} {:>8} {:>14}", "operation", "count", "per second");
    println!(
        "{:<48} {:>8} {:>14.0}",
        "jumpgate SshCa::sign_user (Ed25519)", count, ours
    );
    println!(
        "{:<48} {:>8} {:>14.0}",
        "openssh ssh-keygen -s (process per cert)", keygen_count, theirs
    );
    println!(
        "{:<48} {:>8} {:>14.0}",
        "jumpgate verify_user_cert (all checks)",
        count,
        rate(count, verify)
    );
    println!(
        "{:<48} {:>8} {:>14.0}",
        "jumpgate TlsCa::issue (ECDSA P-256)",
        count,
        rate(count, tls_issue)
    );
    println!("ratio jumpgate/ssh-keygen signing: {:.1}x", ours / theirs);
    let record = serde_json::json!({
        "bench": "cert_issuance",
        "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "commit": jumpgate_bench::git_commit(),
        "command": format!("target/release/bench-cert_issuance {count} {keygen_count}"),
        "per_second": {
            "sign_user_ssh": ours,
            "ssh_keygen_sign": theirs,
            "verify_user_cert": rate(count, verify),
            "tls_issue": rate(count, tls_issue),
        },
        "ratio_sign_over_ssh_keygen": ours / theirs,
    });
    println!("JSON: {record}");
}
