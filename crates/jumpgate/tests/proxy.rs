//! The proxy end to end: a real daemon (auth + proxy), real `curl` for the web API,
//! real `jctl` through the auth passthrough, real `openssl s_client` for odd ALPNs,
//! and a real HAProxy sending PROXY protocol v1 and v2 headers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{
    Cluster, Haproxy, audit_events, free_port, jctl_ok, jctl_ok_stdin, start_daemon,
    start_dev_cluster, text, totp_now, wait_until,
};

/// An HTTPS request with curl: (HTTP status, JSON body). `extra` goes before the URL.
fn curl(url: &str, body: Option<&Value>, extra: &[&str]) -> (u16, Value) {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(extra);
    if let Some(body) = body {
        command
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(body.to_string());
    }
    let out = command
        .arg(url)
        .output()
        .expect("curl (./test.sh installs it)");
    let output = text(&out.stdout);
    let (body, status) = output.rsplit_once('\n').unwrap_or(("", "0"));
    let status: u16 = status.trim().parse().unwrap_or(0);
    let body = serde_json::from_str(body)
        .unwrap_or_else(|_| json!({ "raw": body, "stderr": text(&out.stderr) }));
    (status, body)
}

fn ca_file(data: &Path) -> String {
    data.join("admin/ca.pem").to_str().unwrap().to_string()
}

fn ssh_public_key(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

/// Sends `bytes` on a raw TCP connection and reads until the peer closes (or 5 s).
fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn the_proxy_serves_the_web_api_and_passes_the_auth_api_through() {
    // The usual soft limit of open files, below the hard one, for the daemon to raise
    // (nextest runs every test in a process of its own).
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE.set(1024.min(hard), hard).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        daemon,
        data,
        proxy,
        ..
    } = start_dev_cluster(dir.path());
    let base = format!("https://{proxy}");
    let ca = ca_file(&data);

    // A socket per tunnel and connection: the daemon raised its open-files limit from
    // the soft limit it was started with to the hard one.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.process.id())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect();
    assert_eq!(
        open_files[0],
        hard.to_string(),
        "soft limit not raised:\n{limits}"
    );
    assert_eq!(open_files[1], hard.to_string(), "{limits}");

    // Ping over HTTP/2 and HTTP/1.1, verified against the cluster's CA.
    for version in ["--http2", "--http1.1"] {
        let (status, ping) = curl(
            &format!("{base}/webapi/ping"),
            None,
            &["--cacert", &ca, version],
        );
        assert_eq!(status, 200, "{ping}");
        assert_eq!(ping["cluster_name"], "dev");
        assert_eq!(ping["auth"]["second_factor"], "otp");
        assert!(ping["ca_pins"][0].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(ping["proxy"]["public_addr"][0], proxy.as_str());
    }
    let (status, body) = curl(&format!("{base}/nothing"), None, &["--cacert", &ca]);
    assert_eq!(status, 404, "{body}");

    // The proxy's presence record is there, with its address.
    let proxies = jctl_ok(&data, &["get", "proxies", "--format", "json"]);
    assert!(proxies.contains(&proxy), "{proxies}");

    // jctl reaches the auth API through the proxy's port (routed by SNI, untouched).
    let through = jctl_ok(&data, &["--auth-server", &proxy, "status"]);
    assert!(through.contains("You are:        admin"), "{through}");

    // Login: password and one-time code for the client's own key.
    let enrolled = jctl_ok_stdin(
        &data,
        &[
            "users",
            "add",
            "alice",
            "--roles",
            "access",
            "--logins",
            "alice",
            "--password-stdin",
        ],
        "correct horse battery staple\n",
    );
    let uri = enrolled
        .split_whitespace()
        .find(|word| word.starts_with("otpauth://"))
        .unwrap()
        .to_string();
    let key = ssh_public_key(dir.path(), "alice");
    let login = |password: &str, otp: &str| {
        curl(
            &format!("{base}/webapi/login"),
            Some(&json!({
                "user": "alice", "password": password, "otp": otp, "ssh_public_key": key,
            })),
            &["--cacert", &ca],
        )
    };
    let (status, issued) = login("correct horse battery staple", &totp_now(&uri));
    assert_eq!(status, 200, "{issued}");
    assert!(
        issued["ssh_certificate"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com"),
        "{issued}"
    );
    assert_eq!(issued["principals"], json!(["alice"]));
    let (status, refused) = login("wrong password, long enough", "000000");
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["error"]["code"], "unauthenticated");
    // The audit log has the client's address as the proxy saw it.
    let logins = audit_events(&data, "user.login");
    let last = logins.last().unwrap();
    assert_eq!(last["success"], false, "{last}");
    assert!(
        last["addr.remote"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{last}"
    );

    // Bad requests name what is wrong.
    let (status, bad) = curl(
        &format!("{base}/webapi/login"),
        Some(&json!({ "usr": "alice", "password": "x" })),
        &["--cacert", &ca],
    );
    assert_eq!(status, 422, "{bad}");
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("usr"),
        "{bad}"
    );
    let (status, bad) = curl(
        &format!("{base}/webapi/login"),
        Some(&json!({ "user": "alice", "password": "x" })),
        &["--cacert", &ca],
    );
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ssh_public_key"),
        "{bad}"
    );

    // Signup: a new user's token sets the password once.
    let added = jctl_ok(
        &data,
        &[
            "users", "add", "bob", "--roles", "access", "--logins", "bob",
        ],
    );
    let token = added
        .lines()
        .find_map(|line| {
            line.split_once("Signup token:")
                .map(|(_, t)| t.trim().to_string())
        })
        .or_else(|| {
            added
                .split_whitespace()
                .find(|word| word.len() >= 32 && word.chars().all(|c| c.is_ascii_alphanumeric()))
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no signup token in:\n{added}"));
    // The invite link: the proxy's public address, the token in the fragment only.
    let link = added
        .split_whitespace()
        .find(|word| word.starts_with("https://"))
        .unwrap_or_else(|| panic!("no invite link in:\n{added}"));
    assert!(link.ends_with(&format!("/web/invite#{token}")), "{link}");
    let (status, invite) = curl(
        &format!("{base}/webapi/web/invite"),
        Some(&json!({ "token": token })),
        &["--cacert", &ca],
    );
    assert_eq!(status, 200, "{invite}");
    assert_eq!(invite["user"], "bob");
    let otpauth = invite["otpauth_uri"].as_str().unwrap().to_string();
    // Without a code of the invite's secret the enrolment does not count.
    let (status, refused) = curl(
        &format!("{base}/webapi/signup"),
        Some(&json!({ "token": token, "password": "bob's long password" })),
        &["--cacert", &ca],
    );
    assert_eq!(status, 400, "{refused}");
    let signup = json!({
        "token": token, "password": "bob's long password",
        "otp": support::totp_now(&otpauth),
    });
    let (status, done) = curl(
        &format!("{base}/webapi/signup"),
        Some(&signup),
        &["--cacert", &ca],
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["user"], "bob");
    assert_eq!(done["otpauth_uri"].as_str(), Some(otpauth.as_str()));
    let (status, again) = curl(
        &format!("{base}/webapi/signup"),
        Some(&signup),
        &["--cacert", &ca],
    );
    assert!(status >= 400, "a signup token worked twice: {again}");

    // Host join through the web API.
    let tokens = jctl_ok(
        &data,
        &["tokens", "add", "--type", "node", "--format", "json"],
    );
    let join_token: Value = serde_json::from_str(&tokens).unwrap();
    let join_token = join_token["token"].as_str().unwrap().to_string();
    let host_key = ssh_public_key(dir.path(), "host");
    let tls_key = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 | openssl pkey -pubout",
        )
        .output()
        .unwrap();
    let tls_key = text(&tls_key.stdout);
    let join = |token: &str| {
        curl(
            &format!("{base}/webapi/host/join"),
            Some(&json!({
                "token": token, "role": "node", "host_name": "web-1",
                "host_uuid": "6f1e2a3b-0000-4000-8000-000000000001",
                "ssh_public_key": host_key, "tls_public_key_pem": tls_key,
                "addresses": ["10.0.0.5"],
            })),
            &["--cacert", &ca],
        )
    };
    let (status, joined) = join(&join_token);
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["cluster_name"], "dev");
    assert!(
        joined["tls_certificate_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let (status, refused) = join("not-a-real-token-0123456789abcdef");
    assert!(status == 401 || status == 403, "{status} {refused}");
    let joins = audit_events(&data, "instance.join");
    assert!(
        joins.iter().any(|e| e["success"] == false
            && e["addr.remote"]
                .as_str()
                .unwrap_or("")
                .starts_with("127.0.0.1:")),
        "{joins:#?}"
    );

    // Garbage, a PROXY header while proxy_protocol is off, and an unknown ALPN are
    // closed without an answer and without harming other connections.
    assert!(raw_exchange(&proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_empty());
    assert!(raw_exchange(&proxy, b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 3080\r\n").is_empty());
    let s_client = Command::new("openssl")
        .args(["s_client", "-connect", &proxy, "-alpn", "imap", "-brief"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!text(&s_client.stdout).contains("Verification: OK") || !s_client.status.success());
    assert!(
        wait_until(Duration::from_secs(5), || {
            let log = daemon.log_text();
            log.contains("proxy_protocol is off")
                && log.contains("no protocol this proxy speaks")
                && log.contains("closed a connection before TLS")
        }),
        "refusals not logged:\n{}",
        daemon.log_text()
    );
    let (status, _) = curl(&format!("{base}/webapi/ping"), None, &["--cacert", &ca]);
    assert_eq!(status, 200);
}

/// A real HAProxy in front of the proxy, one frontend per PROXY protocol version.
fn start_haproxy(dir: &Path, backend: &str, v1_port: u16, v2_port: u16) -> Haproxy {
    support::start_haproxy(
        dir,
        &format!(
            "frontend v1\n  bind 127.0.0.1:{v1_port}\n  default_backend jumpgate_v1\n\
             frontend v2\n  bind 127.0.0.1:{v2_port}\n  default_backend jumpgate_v2\n\
             backend jumpgate_v1\n  server proxy {backend} send-proxy\n\
             backend jumpgate_v2\n  server proxy {backend} send-proxy-v2\n"
        ),
        &[v1_port, v2_port],
    )
}

/// Writes a self-signed certificate for `name` into `cert`/`key` (via a temporary file
/// and a rename, as renewal tools do).
fn write_keypair(dir: &Path, name: &str, cert: &Path, key: &Path) {
    let tmp_cert = dir.join(format!("{name}.crt.tmp"));
    let tmp_key = dir.join(format!("{name}.key.tmp"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name}"))
        .arg("-keyout")
        .arg(&tmp_key)
        .arg("-out")
        .arg(&tmp_cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::rename(&tmp_key, key).unwrap();
    std::fs::rename(&tmp_cert, cert).unwrap();
}

/// The common name of the certificate the proxy serves at `addr`.
fn served_name(addr: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -alpn h2 </dev/null 2>/dev/null | openssl x509 -noout -subject"
        ))
        .output()
        .unwrap();
    text(&out.stdout).trim().to_string()
}

#[test]
fn behind_haproxy_the_audited_address_is_the_clients_and_keypairs_reload() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cert = dir.path().join("proxy.crt");
    let key = dir.path().join("proxy.key");
    write_keypair(dir.path(), "first.example", &cert, &key);
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {data}\n  log:\n    severity: info\nauth_service:\n  cluster_name: lb\n  authentication:\n    second_factor: off\nproxy_service:\n  proxy_protocol: on\n  https_keypairs:\n    - cert_file: {cert}\n      key_file: {key}\n",
            data = data.display(),
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    let daemon = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("daemon.log"),
    );
    let proxy = daemon.wait_for_proxy(&data);
    let (v1, v2) = (free_port(), free_port());
    let _haproxy = start_haproxy(dir.path(), &proxy, v1, v2);

    // Without the load balancer's header, the proxy refuses the connection.
    let (status, _) = curl(&format!("https://{proxy}/webapi/ping"), None, &["-k"]);
    assert_eq!(status, 0, "a connection without a PROXY header was served");

    // Through HAProxy, from two other loopback addresses, one per header version.
    jctl_ok_stdin(
        &data,
        &[
            "users",
            "add",
            "carol",
            "--roles",
            "access",
            "--logins",
            "carol",
            "--password-stdin",
        ],
        "carol's long password\n",
    );
    for (port, source) in [(v1, "127.0.0.2"), (v2, "127.0.0.3")] {
        let (status, ping) = curl(
            &format!("https://127.0.0.1:{port}/webapi/ping"),
            None,
            &["-k", "--interface", source],
        );
        assert_eq!(status, 200, "{ping}");
        assert_eq!(ping["cluster_name"], "lb");
        let (status, refused) = curl(
            &format!("https://127.0.0.1:{port}/webapi/login"),
            Some(
                &json!({ "user": "carol", "password": "not carol's password", "ssh_public_key": "ssh-ed25519 AAAA" }),
            ),
            &["-k", "--interface", source],
        );
        assert!(status == 401 || status == 400, "{status} {refused}");
    }
    let logins = audit_events(&data, "user.login");
    for source in ["127.0.0.2:", "127.0.0.3:"] {
        assert!(
            logins
                .iter()
                .any(|e| e["addr.remote"].as_str().unwrap_or("").starts_with(source)),
            "no login audited from {source}: {logins:#?}"
        );
    }

    // The configured certificate is served, and a renewed one replaces it without a
    // restart; broken files leave the last good one in service.
    let through = format!("127.0.0.1:{v1}");
    assert!(
        served_name(&through).contains("first.example"),
        "{}",
        served_name(&through)
    );
    write_keypair(dir.path(), "second.example", &cert, &key);
    assert!(
        wait_until(Duration::from_secs(15), || served_name(&through)
            .contains("second.example")),
        "the renewed certificate was not picked up; log:\n{}",
        daemon.log_text()
    );
    std::fs::write(&key, "not a key").unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || daemon
            .log_text()
            .contains("cannot be used; still serving the previous certificate")),
        "{}",
        daemon.log_text()
    );
    assert!(served_name(&through).contains("second.example"));
}
