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
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn sshd_binary() -> PathBuf {
    for candidate in ["/usr/sbin/sshd", "/usr/bin/sshd"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("sshd not found: install Debian's openssh-server (./test.sh does)");
}

/// A real sshd on a free loopback port, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd, retrying on a fresh port if a parallel test took the one we picked.
    fn start(user_ca: &SshCa, host_ca: &SshCa) -> Sshd {
        let mut last = String::new();
        for _ in 0..5 {
            match Sshd::try_start(user_ca, host_ca) {
                Ok(sshd) => return sshd,
                Err(log) => last = log,
            }
        }
        panic!("sshd did not start; last log:\n{last}");
    }

    fn try_start(user_ca: &SshCa, host_ca: &SshCa) -> Result<Sshd, String> {
        // Privilege separation needs this directory (root only; CI runs as root).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (run the tests as root)");
        let dir = tempfile::tempdir().unwrap();
        let host_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let host_key_path = dir.path().join("host_key");
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
        std::fs::write(
            dir.path().join("host_key-cert.pub"),
            host_cert.to_openssh().unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("user_ca.pub"),
            user_ca.export_openssh().unwrap(),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
             HostCertificate {d}/host_key-cert.pub\nTrustedUserCAKeys {d}/user_ca.pub\n\
             AuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n\
             StrictModes no\nPidFile none\nLogLevel VERBOSE\n"
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let child = Command::new(sshd_binary())
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let mut sshd = Sshd { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = matches!(sshd.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                return Err(sshd.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(sshd)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    Command::new("ssh")
        .args(["-F", "/dev/null", "-T"])
        .arg("-i")
        .arg(&id.key)
        .arg("-o")
        .arg(format!("CertificateFile={}", id.cert.display()))
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "PreferredAuthentications=publickey",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "ConnectTimeout=10", "-p", &sshd.port.to_string()])
        .arg(format!("{login}@127.0.0.1"))
        .arg("echo jumpgate-ok")
        .stdin(Stdio::null())
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
    let sshd = Sshd::start(&user_ca, &host_ca);
    let dir = tempfile::tempdir().unwrap();
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
