//! `jsh` end to end: a real daemon (auth + proxy), real users made with `jctl`, real
//! logins through the proxy's web API, and the profile the logins leave behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{
    HostKey, PASSWORD, Sshd, bins, current_user, jsh, jsh_ok, new_join_token, start_daemon,
    start_dev_cluster, text, totp_now, wait_until,
};

/// Every file a login writes (see `jumpgate_client::profile`).
const PROFILE_FILES: [&str; 8] = [
    "profile.json",
    "id_ed25519",
    "id_ed25519.pub",
    "id_ed25519-cert.pub",
    "tls.key",
    "tls.crt",
    "tls_ca.pem",
    "known_hosts",
];

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn jsh_logs_in_shows_the_profile_and_logs_out() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let ca = cluster.ca();
    let uri = cluster.add_user("alice", "root,alice");
    let home = dir.path().join("alice-home");

    // Nothing works before a login, and the errors say what to do.
    let out = jsh(&home, &["ssh", "root@web-1"], None);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("jsh login"),
        "{}",
        text(&out.stderr)
    );
    let out = jsh(&home, &["status"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("jsh login --proxy"),
        "{}",
        text(&out.stderr)
    );
    let out = jsh(&home, &["ls"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not logged in"),
        "{}",
        text(&out.stderr)
    );

    // A wrong password: the proxy's message, a failure, and no profile.
    let out = jsh(
        &home,
        &[
            "login",
            "--proxy",
            &cluster.proxy,
            "--user",
            "alice",
            "--ca-cert",
            &ca,
            "--password-stdin",
            "--otp",
            "000000",
        ],
        Some("not the password at all\n"),
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("jsh: error: "), "{stderr}");
    assert!(stderr.contains("unauthenticated"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!home.join("profile.json").exists());

    // Without a terminal and without --otp, jsh says how to give the code.
    let out = jsh(
        &home,
        &[
            "login",
            "--proxy",
            &cluster.proxy,
            "--user",
            "alice",
            "--ca-cert",
            &ca,
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--otp"), "{}", text(&out.stderr));

    // The dev cluster's web certificate is not under the system's roots: a clear hint.
    let out = jsh(
        &home,
        &[
            "login",
            "--proxy",
            &cluster.proxy,
            "--user",
            "alice",
            "--password-stdin",
            "--otp",
            "000000",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--ca-cert"),
        "{}",
        text(&out.stderr)
    );

    // The real login.
    let out = jsh_ok(
        &home,
        &[
            "login",
            "--proxy",
            &cluster.proxy,
            "--user",
            "alice",
            "--ca-cert",
            &ca,
            "--password-stdin",
            "--otp",
            &totp_now(&uri),
            "--ttl",
            "2h",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Logged in as: alice"), "{stdout}");
    assert_eq!(mode(&home), 0o700);
    for name in PROFILE_FILES {
        assert_eq!(mode(&home.join(name)), 0o600, "{name}");
    }
    let cert = std::fs::read_to_string(home.join("id_ed25519-cert.pub")).unwrap();
    assert!(
        cert.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{cert}"
    );
    let known_hosts = std::fs::read_to_string(home.join("known_hosts")).unwrap();
    assert!(known_hosts.starts_with("@cert-authority "), "{known_hosts}");
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("profile.json")).unwrap()).unwrap();
    assert_eq!(profile["user"], "alice");
    assert_eq!(profile["cluster"], "dev");
    assert_eq!(profile["proxy"], cluster.proxy.as_str());
    assert_eq!(profile["insecure"], false);
    // No private key in what was printed, and none in the profile metadata.
    assert!(!stdout.contains("PRIVATE KEY"));
    assert!(!profile.to_string().contains("PRIVATE KEY"));
    // OpenSSH can read the key and certificate jsh wrote.
    let keygen = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(home.join("id_ed25519-cert.pub"))
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    let listed = text(&keygen.stdout);
    assert!(
        listed.contains("root") && listed.contains("alice"),
        "{listed}"
    );

    let status = text(&jsh_ok(&home, &["status"], None).stdout);
    assert!(status.contains("Logged in as: alice"), "{status}");
    assert!(status.contains("Cluster:      dev"), "{status}");
    assert!(status.contains("Roles:        access"), "{status}");
    assert!(status.contains("root"), "{status}");
    assert!(status.contains("valid for 1h"), "{status}");

    let config = text(&jsh_ok(&home, &["config"], None).stdout);
    assert!(config.contains("Host *.dev"), "{config}");
    assert!(config.contains("ProxyCommand "), "{config}");
    assert!(config.contains(" proxy ssh %r@%h:%p"), "{config}");
    assert!(
        config.contains(&format!(
            "CertificateFile {}",
            home.join("id_ed25519-cert.pub").display()
        )),
        "{config}"
    );
    // OpenSSH accepts the block.
    let ssh_config = dir.path().join("ssh_config");
    std::fs::write(&ssh_config, &config).unwrap();
    let parsed = Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(&ssh_config)
        .arg("root@web-1.dev")
        .output()
        .unwrap();
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
    assert!(
        text(&parsed.stdout).contains("proxycommand"),
        "{}",
        text(&parsed.stdout)
    );

    // A node that does not exist: refused, with exit status 255 as ssh.
    let out = jsh(&home, &["ssh", "root@no-such-node", "true"], None);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("jsh: error: "),
        "{}",
        text(&out.stderr)
    );

    // Logout removes the keys; a second logout has nothing to do.
    let out = text(&jsh_ok(&home, &["logout"], None).stdout);
    assert!(out.contains("Logged out alice"), "{out}");
    for name in PROFILE_FILES {
        assert!(!home.join(name).exists(), "{name}");
    }
    let out = text(&jsh_ok(&home, &["logout"], None).stdout);
    assert!(out.contains("Not logged in"), "{out}");
    let out = jsh(&home, &["ssh", "root@web-1"], None);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("jsh login"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn jsh_login_insecure_works_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let uri = cluster.add_user("bob", "bob");
    let home = dir.path().join("bob-home");
    let out = jsh_ok(
        &home,
        &[
            "login",
            "--proxy",
            &cluster.proxy,
            "--user",
            "bob",
            "--insecure",
            "--password-stdin",
            "--otp",
            &totp_now(&uri),
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("WARNING: --insecure"), "{stderr}");
    assert!(
        text(&out.stdout).contains("Logged in as: bob"),
        "{}",
        text(&out.stdout)
    );
    let profile = std::fs::read_to_string(home.join("profile.json")).unwrap();
    assert!(profile.contains("\"insecure\": true"), "{profile}");
    // A later login may leave out --proxy: the profile remembers it.
    let out = jsh(
        &home,
        &["login", "--user", "bob", "--insecure", "--password-stdin"],
        Some("x\n"),
    );
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("which cluster"), "{stderr}");
}

/// Needs the auth service to let users list the nodes their roles allow. The node is a
/// real agent that joins the cluster through the proxy with a join token.
#[test]
fn jsh_ls_lists_nodes_with_labels() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let (token, pin) = new_join_token(&cluster.data, &["--type", "node", "--ttl", "1h"]);
    let agent_config = dir.path().join("web-1.yaml");
    std::fs::write(
        &agent_config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {data}\n  nodename: web-1\n  proxy_server: {proxy}\n  auth_token: \"{token}\"\n  ca_pin: \"{pin}\"\nssh_service:\n  labels:\n    env: staging\n",
            data = dir.path().join("web-1-data").display(),
            proxy = cluster.proxy,
        ),
    )
    .unwrap();
    let agent = start_daemon(
        &["-c", agent_config.to_str().unwrap()],
        &dir.path().join("agent.log"),
    );

    let uri = cluster.add_user("carol", "root");
    let home = dir.path().join("carol-home");
    jsh_ok(
        &home,
        &[
            "login",
            "--proxy",
            &cluster.proxy,
            "--user",
            "carol",
            "--ca-cert",
            &cluster.ca(),
            "--password-stdin",
            "--otp",
            &totp_now(&uri),
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let mut last = String::new();
    let listed = wait_until(Duration::from_secs(30), || {
        let out = jsh(&home, &["ls", "--format", "json"], None);
        assert!(out.status.success(), "jsh ls failed: {}", text(&out.stderr));
        last = text(&out.stdout);
        let nodes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        nodes
            .iter()
            .any(|node| node["hostname"] == "web-1" && node["labels"]["env"] == "staging")
    });
    assert!(
        listed,
        "jsh ls does not show web-1: {last}\nagent:\n{}",
        agent.log_text()
    );
    let table = text(&jsh_ok(&home, &["ls"], None).stdout);
    assert!(table.starts_with("Node"), "{table}");
    assert!(
        table.contains("UUID") && table.contains("Labels"),
        "{table}"
    );
    assert!(
        table.contains("web-1") && table.contains("env=staging"),
        "{table}"
    );
    let out = text(&jsh_ok(&home, &["ls", "--format", "json", "env=staging"], None).stdout);
    assert!(out.contains("web-1"), "{out}");
    // A selector no node matches: an empty list, not an error.
    let out = text(&jsh_ok(&home, &["ls", "--format", "json", "env=prod"], None).stdout);
    assert_eq!(out.trim(), "[]");
    let out = jsh(&home, &["ls", "not-a-selector"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("KEY=VALUE"),
        "{}",
        text(&out.stderr)
    );
}

/// A real OpenSSH sshd with a host key (and, if `principal` is given, a host
/// certificate for it from `jctl auth sign --host`) that trusts the cluster's user CA.
fn start_sshd(data: &Path, dir: &Path, principal: Option<&str>) -> Sshd {
    let host_key = match principal {
        Some(host) => HostKey::SignedByCluster {
            host,
            principals: None,
        },
        None => HostKey::Unsigned,
    };
    Sshd::start_for_cluster(bins(), data, dir, host_key, "LogLevel VERBOSE\n")
}

/// jsh's SSH client (`jumpgate_client::ssh`) against a real OpenSSH server, without the
/// proxy in between: host certificate check, certificate login, exit status, stdout and
/// stderr, standard input, local port forwarding; and refusals of a wrong or plain host
/// key and of a login the certificate does not carry.
#[test]
fn the_jsh_ssh_client_works_with_a_real_sshd() {
    use jumpgate_client::ssh::{ForwardSpec, SessionIo, SessionRequest, connect_stream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let me = current_user();
    let uri = cluster.add_user("dave", &me);
    let home = dir.path().join("dave-home");
    jsh_ok(
        &home,
        &[
            "login",
            "--proxy",
            &cluster.proxy,
            "--user",
            "dave",
            "--ca-cert",
            &cluster.ca(),
            "--password-stdin",
            "--otp",
            &totp_now(&uri),
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let profile = jumpgate_client::Home::new(&home).load().unwrap();
    let sshd = start_sshd(&cluster.data, &dir.path().join("sshd"), Some("node-1"));
    let plain = start_sshd(&cluster.data, &dir.path().join("plain"), None);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dial = |port: u16| async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap()
        };
        let connection = connect_stream(
            &profile,
            dial(sshd.port).await,
            "node-1",
            "node-1",
            &me,
            None,
        )
        .await
        .unwrap_or_else(|err| panic!("{err}\nsshd:\n{}", sshd.log()));

        // A command: its output, its error output, its exit status, and our stdin.
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let end = connection
            .run(
                &SessionRequest {
                    command: Some("read line; echo got $line; echo oops >&2; exit 3".to_string()),
                    pty: None,
                    forward_agent: false,
                },
                SessionIo {
                    stdin: &b"hello\n"[..],
                    stdout: &mut stdout,
                    stderr: &mut stderr,
                    resizes: None,
                    line_prefix: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(end.exit_code(), 3);
        assert_eq!(text(&stdout), "got hello\n");
        assert_eq!(text(&stderr), "oops\n");

        // Prefixed lines, as for several nodes.
        let mut stdout = Vec::new();
        connection
            .run(
                &SessionRequest {
                    command: Some("printf 'a\\nb'".to_string()),
                    ..SessionRequest::default()
                },
                SessionIo {
                    stdin: tokio::io::empty(),
                    stdout: &mut stdout,
                    stderr: tokio::io::sink(),
                    resizes: None,
                    line_prefix: Some("[node-1] ".to_string()),
                },
            )
            .await
            .unwrap();
        assert_eq!(text(&stdout), "[node-1] a\n[node-1] b\n");

        // -t: a PTY of the requested size.
        let mut stdout = Vec::new();
        let end = connection
            .run(
                &SessionRequest {
                    command: Some("tty; stty size".to_string()),
                    pty: Some(jumpgate_client::PtyRequest {
                        term: "xterm".to_string(),
                        cols: 100,
                        rows: 30,
                    }),
                    forward_agent: false,
                },
                SessionIo {
                    stdin: tokio::io::empty(),
                    stdout: &mut stdout,
                    stderr: tokio::io::sink(),
                    resizes: None,
                    line_prefix: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(end.exit_code(), 0);
        let shown = text(&stdout);
        assert!(shown.starts_with("/dev/pts/"), "{shown}");
        assert!(shown.contains("30 100"), "{shown}");

        // -L: a local port to a TCP echo server, as seen from the node.
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        let forwarding = connection
            .forward_local(&ForwardSpec::parse(&format!("0:127.0.0.1:{echo_port}")).unwrap())
            .await
            .unwrap();
        let mut local = tokio::net::TcpStream::connect(forwarding.local_addr)
            .await
            .unwrap();
        local.write_all(b"through the tunnel").await.unwrap();
        let mut back = [0u8; 18];
        tokio::time::timeout(Duration::from_secs(10), local.read_exact(&mut back))
            .await
            .expect("echo through the forwarding")
            .unwrap();
        assert_eq!(&back, b"through the tunnel");
        drop(forwarding);
        connection.disconnect().await;

        // The host certificate must name the node we asked for.
        let err = connect_stream(
            &profile,
            dial(sshd.port).await,
            "node-2",
            "node-2",
            &me,
            None,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("refusing node node-2"), "{err}");
        assert!(err.contains("node-2"), "{err}");
        // A plain host key is refused.
        let err = connect_stream(
            &profile,
            dial(plain.port).await,
            "node-1",
            "node-1",
            &me,
            None,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("plain host key"), "{err}");
        // A login the certificate does not carry.
        let err = connect_stream(
            &profile,
            dial(sshd.port).await,
            "node-1",
            "node-1",
            "nobody",
            None,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("refused login \"nobody\""), "{err}");
    });
}
