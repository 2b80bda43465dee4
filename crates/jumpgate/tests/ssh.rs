//! SSH end to end with real processes: a dev daemon (auth, proxy and this host's SSH
//! service behind its reverse tunnel), users made with `jctl` and logged in with `jsh`,
//! and the clients people use: `jsh ssh`, OpenSSH's `ssh`, `sftp` and `scp` through
//! `jsh proxy ssh`, under a real terminal (tmux) where it matters. Every refusal is
//! checked twice: what the user sees, and the `auth` audit event with the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{
    Cluster, bins, dev_node_name, jctl_ok, jsh, jsh_ok, jsh_until, output_within,
    start_dev_cluster, text, wait_until,
};

/// How long any one wait for a process, a screen or an event may take.
const WAIT: Duration = Duration::from_secs(20);

/// The dev node as `jsh ls` shows it (waiting for its first heartbeat): (hostname, UUID).
fn wait_for_node(home: &Path) -> (String, String) {
    let wanted = dev_node_name();
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let out = jsh_ok(home, &["ls", "--format", "json"], None);
        last = text(&out.stdout);
        let nodes: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(node) = nodes
            .iter()
            .find(|node| node["hostname"] == wanted.as_str())
        {
            let uuid = node["uuid"]
                .as_str()
                .unwrap_or_else(|| panic!("jsh ls gives no uuid: {node}"));
            return (wanted, uuid.to_string());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the dev node {wanted:?} never showed in `jsh ls`: {last}");
}

/// The cluster name of a profile (`jsh login` writes it).
fn profile_cluster(home: &Path) -> String {
    let profile: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("profile.json")).unwrap()).unwrap();
    profile["cluster"].as_str().unwrap().to_string()
}

/// root's login shell, from the user database.
fn root_shell() -> String {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("root:"))
        .and_then(|rest| rest.rsplit(':').next())
        .unwrap()
        .to_string()
}

/// Audit events of `event_type` that satisfy `matches`, waiting for them: the node sends
/// its events in the background.
fn wait_for_events(
    data: &Path,
    event_type: &str,
    mut matches: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let mut found = Vec::new();
    let mut all = Vec::new();
    wait_until(WAIT, || {
        all = support::audit_events(data, event_type);
        found = all.iter().filter(|e| matches(e)).cloned().collect();
        !found.is_empty()
    });
    assert!(
        !found.is_empty(),
        "no matching {event_type} event; all of them: {}",
        serde_json::to_string_pretty(&all).unwrap()
    );
    found
}

/// A refused access: an `auth` event, failed, whose error contains `reason`.
fn wait_for_refusal(data: &Path, reason: &str) -> Value {
    let events = wait_for_events(data, "auth", |event| {
        event["success"] == false
            && event["error"]
                .as_str()
                .is_some_and(|error| error.contains(reason))
    });
    events[0].clone()
}

/// A TCP echo server on 127.0.0.1 for as long as the test runs; returns its port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut stream);
            });
        }
    });
    port
}

/// Sends `payload` to 127.0.0.1:`port` and reads as many bytes back.
fn round_trip(port: u16, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(payload)?;
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}

/// `jsh ssh -L 127.0.0.1:PORT:127.0.0.1:TARGET root@NODE 'sleep 10'`, started in the
/// background; returns the child and PORT once the local port accepts connections.
fn start_forwarding(home: &Path, node: &str, target: u16) -> (Child, u16) {
    for _ in 0..3 {
        let port = support::free_port();
        let mut child = bins()
            .jsh_command(home)
            .args(["ssh", "-L", &format!("127.0.0.1:{port}:127.0.0.1:{target}")])
            .arg(format!("root@{node}"))
            .arg("sleep 10")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let up = wait_until(WAIT, || {
            matches!(child.try_wait(), Ok(Some(_)))
                || TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if up && matches!(child.try_wait(), Ok(None)) {
            return (child, port);
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "jsh -L on port {port} did not come up (retrying): {}",
            text(&out.stderr)
        );
    }
    panic!("jsh ssh -L never listened");
}

/// Waits (bounded) for a background child and returns its output.
fn finish(mut child: Child) -> Output {
    let exited = wait_until(WAIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "did not exit in time: {}", text(&out.stderr));
    out
}

/// A tmux server of our own (its own socket), one session running `command` in a
/// terminal of `cols` x `rows`; killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(dir: &Path, name: &str, command: &str, cols: u16, rows: u16) -> Tmux {
        let socket = dir.join(format!("{name}.tmux"));
        // No status line, so the pane is the whole window.
        let config = dir.join(format!("{name}.tmux.conf"));
        std::fs::write(&config, "set -g status off\n").unwrap();
        let tmux = Tmux { socket };
        let out = output_within(
            tmux.command()
                .arg("-f")
                .arg(&config)
                .args(["new-session", "-d", "-s", "main"])
                .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
                .arg(command),
            None,
            WAIT,
        );
        assert!(out.status.success(), "tmux: {}", text(&out.stderr));
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.socket).env_remove("TMUX");
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = output_within(self.command().args(args), None, WAIT);
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Types `line` and Enter.
    fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-t", "main", "-l", line]);
        self.run(&["send-keys", "-t", "main", "Enter"]);
    }

    /// What the terminal shows, scrollback included.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "main"])
    }

    /// Waits until the screen shows `needle`; fails the test with the screen if not.
    fn wait_for(&self, needle: &str) {
        let mut screen = String::new();
        let seen = wait_until(WAIT, || {
            screen = self.screen();
            screen.contains(needle)
        });
        assert!(seen, "the terminal never showed {needle:?}:\n{screen}");
    }

    fn pane_size(&self) -> String {
        self.run(&[
            "display-message",
            "-p",
            "-t",
            "main",
            "#{pane_width}x#{pane_height}",
        ])
        .trim()
        .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// Waits for a shell's exit status written to `file` by `...; echo $? > file`.
fn wait_for_exit_file(file: &Path, tmux: &Tmux) -> String {
    let done = wait_until(WAIT, || {
        std::fs::read_to_string(file).is_ok_and(|s| s.ends_with('\n'))
    });
    assert!(done, "the client did not exit:\n{}", tmux.screen());
    std::fs::read_to_string(file).unwrap().trim().to_string()
}

/// 300 kB with every byte value, not repeating with any short period.
fn payload() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(7) ^ (i / 251)) as u8)
        .collect()
}

/// OpenSSH's `ssh ARGS` (batch mode: never a prompt), at most 60 s.
fn openssh(program: &str, args: &[&str], stdin: Option<&str>) -> Output {
    output_within(
        Command::new(program)
            .args(["-o", "BatchMode=yes"])
            .args(args)
            .env_remove("SSH_AUTH_SOCK"),
        stdin,
        Duration::from_secs(60),
    )
}

/// `ssh` with a given key and certificate, through `jsh proxy ssh` of the profile in
/// `proxy_home` (its TLS identity reaches the proxy; the key is what the node sees).
fn ssh_with_key(proxy_home: &Path, key: &Path, target: &str, command: &str) -> Output {
    let proxy_command = format!(
        "env JUMPGATE_HOME={} {} proxy ssh %r@%h:%p",
        proxy_home.display(),
        support::jsh_bin()
    );
    openssh(
        "ssh",
        &[
            "-F",
            "/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!(
                "UserKnownHostsFile={}",
                proxy_home.join("known_hosts").display()
            ),
            "-i",
            key.to_str().unwrap(),
            "-o",
            &format!("CertificateFile={}-cert.pub", key.display()),
            "-o",
            &format!("ProxyCommand={proxy_command}"),
            target,
            command,
        ],
        None,
    )
}

/// `jctl create -f` (overwriting) of a role written to a file.
fn create_role(cluster: &Cluster, dir: &Path, name: &str, yaml: &str) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    jctl_ok(&cluster.data, &["create", "-f", path.to_str().unwrap()]);
}

/// `jsh ssh`: commands with their output and exit status, by name and by UUID, a login
/// environment, standard input, an unknown node; an interactive shell under a real
/// terminal (size, resize, ^C, exit status); `-L` port forwarding; and the audit trail
/// of a session.
#[test]
fn jsh_ssh_runs_commands_shells_and_forwards_ports() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let uri = cluster.add_user("alice", "root");
    let home = dir.path().join("alice-home");
    cluster.login(&home, "alice", &uri);
    let (node, uuid) = wait_for_node(&home);
    let table = text(&jsh_ok(&home, &["ls"], None).stdout);
    assert!(table.contains(&node) && table.contains(&uuid), "{table}");
    let at_node = format!("root@{node}");

    // A command: its output and its exit status.
    let out = jsh(&home, &["ssh", &at_node, "echo hi; exit 3"], None);
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // By UUID too.
    let out = jsh(&home, &["ssh", &format!("root@{uuid}"), "hostname"], None);
    assert_eq!(text(&out.stdout).trim(), node, "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    // The environment of a login.
    let out = jsh_ok(
        &home,
        &["ssh", &at_node, "echo $USER $HOME $SHELL; pwd"],
        None,
    );
    assert_eq!(
        text(&out.stdout),
        format!("root /root {}\n/root\n", root_shell())
    );
    // Standard input goes through, and its end too (cat exits).
    let out = jsh_ok(&home, &["ssh", &at_node, "cat"], Some("data\nmore data\n"));
    assert_eq!(text(&out.stdout), "data\nmore data\n");
    // A node that does not exist.
    let out = jsh(&home, &["ssh", "root@no-such-node", "true"], None);
    assert_eq!(out.status.code(), Some(255));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no node named \"no-such-node\""),
        "{stderr}"
    );

    // The audit trail of the first command's session.
    let exec = wait_for_events(&cluster.data, "exec", |event| {
        event["command"] == "echo hi; exit 3"
    });
    let sid = exec[0]["sid"].as_str().unwrap().to_string();
    let mut session = Vec::new();
    wait_until(WAIT, || {
        let out = jctl_ok(
            &cluster.data,
            &["audit", "search", "--session", &sid, "--format", "json"],
        );
        session = serde_json::from_str::<Vec<Value>>(&out).unwrap();
        session.iter().any(|event| event["event"] == "session.end")
    });
    let kinds: Vec<&str> = session
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["session.start", "exec", "session.end"],
        "{session:?}"
    );
    for event in &session {
        assert_eq!(event["sid"], sid.as_str(), "{event}");
        assert_eq!(event["user"], "alice", "{event}");
        assert_eq!(event["login"], "root", "{event}");
        let addr = event["addr.remote"].as_str().unwrap_or_default();
        assert!(addr.starts_with("127.0.0.1:"), "{event}");
    }
    assert_eq!(session[1]["command"], "echo hi; exit 3");
    assert_eq!(session[1]["exitCode"], "3");
    assert_eq!(session[1]["success"], true);

    // -L: a local port to an echo server as the node sees it.
    let echo = echo_server();
    let (forwarding, port) = start_forwarding(&home, &node, echo);
    let sent = b"round trip through jsh -L".repeat(1000);
    let back = round_trip(port, &sent).unwrap();
    assert!(back == sent, "the echo came back different");
    let out = finish(forwarding);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for_events(&cluster.data, "port", |event| {
        event["addr.local"] == format!("127.0.0.1:{echo}").as_str()
    });

    // An interactive shell in a real terminal.
    let exit_file = dir.path().join("jsh-exit");
    let tmux = Tmux::start(
        dir.path(),
        "jsh",
        &format!(
            "JUMPGATE_HOME={} {} ssh {at_node}; echo $? > {}",
            home.display(),
            support::jsh_bin(),
            exit_file.display()
        ),
        120,
        40,
    );
    assert_eq!(tmux.pane_size(), "120x40");
    tmux.type_line("echo READY$((40+2))");
    tmux.wait_for("READY42");
    tmux.type_line("echo SIZE=$(stty size) COLS=$(tput cols)");
    tmux.wait_for("SIZE=40 120 COLS=120");
    // A resize reaches the node's terminal.
    tmux.run(&["resize-window", "-t", "main", "-x", "100", "-y", "30"]);
    assert_eq!(tmux.pane_size(), "100x30");
    let mut screen = String::new();
    let resized = wait_until(WAIT, || {
        tmux.type_line("echo NOW=$(stty size)");
        std::thread::sleep(Duration::from_millis(500));
        screen = tmux.screen();
        screen.contains("NOW=30 100")
    });
    assert!(resized, "the node's terminal was not resized:\n{screen}");
    // ^C interrupts the foreground program, not the session.
    tmux.type_line("sleep 100");
    tmux.wait_for("sleep 100");
    std::thread::sleep(Duration::from_secs(1));
    tmux.run(&["send-keys", "-t", "main", "C-c"]);
    tmux.type_line("echo AFTER$((2+3))");
    tmux.wait_for("AFTER5");
    assert!(!exit_file.exists(), "jsh ended on ^C:\n{}", tmux.screen());
    // The shell's exit status is jsh's.
    tmux.type_line("exit 7");
    assert_eq!(wait_for_exit_file(&exit_file, &tmux), "7");
    // An interactive session: session.start and session.end, no exec event.
    let starts = wait_for_events(&cluster.data, "session.start", |event| {
        event["interactive"] == true && event["size"] == "120:40"
    });
    let sid = starts[0]["sid"].as_str().unwrap().to_string();
    wait_for_events(&cluster.data, "session.end", |event| {
        event["sid"] == sid.as_str()
    });
    let session: Vec<Value> = serde_json::from_str(&jctl_ok(
        &cluster.data,
        &["audit", "search", "--session", &sid, "--format", "json"],
    ))
    .unwrap();
    let kinds: Vec<&str> = session
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["session.start", "session.end"], "{session:?}");
}

/// OpenSSH through `jsh config`: `ssh` with a command and in a terminal, `sftp`, and
/// `scp` in both its modes.
#[test]
fn openssh_reaches_the_node_through_jsh_proxy_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let uri = cluster.add_user("alice", "root");
    let home = dir.path().join("alice-home");
    cluster.login(&home, "alice", &uri);
    let (node, _) = wait_for_node(&home);
    let cluster_name = profile_cluster(&home);
    let status = jctl_ok(&cluster.data, &["status"]);
    assert!(status.contains(&cluster_name), "{status}");
    let config = dir.path().join("ssh_config");
    std::fs::write(&config, jsh_ok(&home, &["config"], None).stdout).unwrap();
    let config = config.to_str().unwrap();
    let host = format!("{node}.{cluster_name}");
    let at_host = format!("root@{host}");

    let out = openssh("ssh", &["-F", config, &at_host, "echo hi; exit 3"], None);
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // `jsh proxy ssh` passes OpenSSH's first bytes on before the proxy answers; a refusal
    // still reads as the proxy's, not as a broken SSH connection.
    let nowhere = format!("root@no-such-node.{cluster_name}");
    let out = openssh("ssh", &["-F", config, &nowhere, "true"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown node: no node named \"no-such-node\" is online"),
        "{}",
        text(&out.stderr)
    );

    // Interactive, in a terminal.
    let exit_file = dir.path().join("ssh-exit");
    let tmux = Tmux::start(
        dir.path(),
        "ssh",
        &format!(
            "ssh -F {config} -t {at_host}; echo $? > {}",
            exit_file.display()
        ),
        100,
        30,
    );
    tmux.type_line("echo X$((6*7))Y TTY=$(tty)");
    tmux.wait_for("X42Y TTY=/dev/pts/");
    tmux.type_line("exit");
    assert_eq!(wait_for_exit_file(&exit_file, &tmux), "0");

    // sftp: put, then get back.
    let data = payload();
    let local = dir.path().join("local.bin");
    std::fs::write(&local, &data).unwrap();
    let remote = dir.path().join("remote-sftp.bin");
    let back = dir.path().join("back-sftp.bin");
    let batch = dir.path().join("sftp-batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {}\nget {} {}\n",
            local.display(),
            remote.display(),
            remote.display(),
            back.display()
        ),
    )
    .unwrap();
    let out = openssh(
        "sftp",
        &["-F", config, "-b", batch.to_str().unwrap(), &at_host],
        None,
    );
    assert!(out.status.success(), "sftp: {}", text(&out.stderr));
    // The node is this machine: the upload is on our disk.
    assert!(std::fs::read(&remote).unwrap() == data, "sftp put");
    assert!(std::fs::read(&back).unwrap() == data, "sftp get");

    // scp, in its default (sftp) mode and in the legacy scp protocol (-O).
    for (mode, flags) in [("sftp", &[][..]), ("legacy", &["-O"][..])] {
        let remote = dir.path().join(format!("remote-scp-{mode}.bin"));
        let back = dir.path().join(format!("back-scp-{mode}.bin"));
        let remote_spec = format!("{at_host}:{}", remote.display());
        let mut up = vec!["-F", config];
        up.extend_from_slice(flags);
        let mut down = up.clone();
        up.extend_from_slice(&[local.to_str().unwrap(), &remote_spec]);
        down.extend_from_slice(&[&remote_spec, back.to_str().unwrap()]);
        let out = openssh("scp", &up, None);
        assert!(out.status.success(), "scp {mode} up: {}", text(&out.stderr));
        assert!(std::fs::read(&remote).unwrap() == data, "scp {mode} up");
        let out = openssh("scp", &down, None);
        assert!(
            out.status.success(),
            "scp {mode} down: {}",
            text(&out.stderr)
        );
        assert!(std::fs::read(&back).unwrap() == data, "scp {mode} down");
    }
    // The copies are audited as what they are.
    wait_for_events(&cluster.data, "sftp", |event| event["user"] == "alice");
    wait_for_events(&cluster.data, "scp", |event| event["user"] == "alice");
}

/// Refusals: a login the roles do not give, a node the roles deny, an expired
/// certificate, a certificate of another cluster, port forwarding the roles forbid.
/// Each one is clear to the user and audited with its reason.
#[test]
fn ssh_refusals_are_clear_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let uri = cluster.add_user("alice", "root");
    let alice = dir.path().join("alice-home");
    cluster.login(&alice, "alice", &uri);
    let (node, _) = wait_for_node(&alice);
    let cluster_name = profile_cluster(&alice);
    let at_host = format!("root@{node}.{cluster_name}");

    // A login no role gives.
    let out = jsh(&alice, &["ssh", &format!("nobody@{node}"), "true"], None);
    assert_eq!(out.status.code(), Some(255));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("access denied"), "{stderr}");
    assert!(stderr.contains("`nobody`"), "{stderr}");
    let event = wait_for_refusal(&cluster.data, "login `nobody`");
    assert!(event["user"].as_str().unwrap().contains("alice"), "{event}");

    // A node the roles deny. A deny matching every node leaves a certificate without
    // logins, so `jsh login` would refuse it already: dan logs in while his role allows
    // the node, then the role gains the deny (a deny beats the allow), and the
    // certificate he still holds no longer gets him in.
    let allow_all = "kind: role\nversion: v7\nmetadata:\n  name: no-nodes\nspec:\n  allow:\n    logins: [root]\n    node_labels: {'*': '*'}\n";
    create_role(&cluster, dir.path(), "no-nodes", allow_all);
    let uri = cluster.add_user_with_roles("dan", "no-nodes", "root");
    let dan = dir.path().join("dan-home");
    cluster.login(&dan, "dan", &uri);
    let dan_ssh = ["ssh", &format!("root@{node}"), "echo allowed"];
    let out = jsh_until(&dan, &dan_ssh, |out| out.status.success());
    assert_eq!(text(&out.stdout), "allowed\n", "{}", text(&out.stderr));
    create_role(
        &cluster,
        dir.path(),
        "no-nodes",
        &format!("{allow_all}  deny:\n    node_labels: {{'*': '*'}}\n"),
    );
    let out = jsh_until(&dan, &dan_ssh, |out| !out.status.success());
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stdout));
    assert!(text(&out.stdout).is_empty());
    // Dan cannot tell a node his roles hide from one that does not exist: the same
    // words (the audit log has the reason).
    let hidden = text(&out.stderr).replace(&node, "NODE");
    let missing = jsh(&dan, &["ssh", "root@no-such-node", "true"], None);
    assert_eq!(missing.status.code(), out.status.code());
    assert_eq!(
        hidden,
        text(&missing.stderr).replace("no-such-node", "NODE")
    );
    let event = wait_for_refusal(&cluster.data, "do not let them reach node");
    assert!(event["user"].as_str().unwrap().contains("dan"), "{event}");

    // A certificate for OpenSSH from `jctl auth sign` works (the control for the next
    // two checks, which change only the certificate)...
    let fresh = dir.path().join("fresh");
    jctl_ok(
        &cluster.data,
        &[
            "auth",
            "sign",
            "--user",
            "alice",
            "--ttl",
            "1h",
            "--out",
            fresh.to_str().unwrap(),
        ],
    );
    let out = ssh_with_key(&alice, &fresh, &at_host, "echo fresh");
    assert_eq!(text(&out.stdout), "fresh\n", "{}", text(&out.stderr));
    // ...but not once it has expired.
    let short = dir.path().join("short");
    jctl_ok(
        &cluster.data,
        &[
            "auth",
            "sign",
            "--user",
            "alice",
            "--ttl",
            "2s",
            "--out",
            short.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_secs(4));
    let out = ssh_with_key(&alice, &short, &at_host, "echo expired");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stdout));
    assert!(text(&out.stdout).is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
    let event = wait_for_refusal(&cluster.data, "an expired or not yet valid certificate");
    assert_eq!(event["login"], "root", "{event}");

    // A certificate from another cluster's user CA, through this cluster's proxy.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = start_dev_cluster(&other_dir);
    other.add_user("alice", "root");
    let foreign = dir.path().join("foreign");
    jctl_ok(
        &other.data,
        &[
            "auth",
            "sign",
            "--user",
            "alice",
            "--ttl",
            "1h",
            "--out",
            foreign.to_str().unwrap(),
        ],
    );
    drop(other);
    let out = ssh_with_key(&alice, &foreign, &at_host, "echo foreign");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stdout));
    assert!(text(&out.stdout).is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
    let event = wait_for_refusal(
        &cluster.data,
        "which is not a trusted user CA of this cluster",
    );
    assert_eq!(event["login"], "root", "{event}");

    // Port forwarding the roles forbid: the forwarded connection is closed at once.
    create_role(
        &cluster,
        dir.path(),
        "no-forward",
        "kind: role\nversion: v7\nmetadata:\n  name: no-forward\nspec:\n  allow:\n    logins: [root]\n    node_labels: {'*': '*'}\n  options:\n    port_forwarding: false\n",
    );
    let uri = cluster.add_user_with_roles("erin", "no-forward", "root");
    let erin = dir.path().join("erin-home");
    cluster.login(&erin, "erin", &uri);
    let echo = echo_server();
    let (forwarding, port) = start_forwarding(&erin, &node, echo);
    let err = round_trip(port, b"should not arrive").unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "the refused forwarding was not closed: {err}"
    );
    let out = finish(forwarding);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("refused to forward"), "{stderr}");
    let event = wait_for_refusal(&cluster.data, "port forwarding");
    assert_eq!(event["user"], "erin", "{event}");
    // The session itself still ran: only the forwarding was refused.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// A recording survives the abrupt end of its session and of the whole dev cluster
/// (node, tunnel and auth killed with SIGKILL mid-session): what was flushed to the
/// node's disk is uploaded when the daemon starts again, and completed.
#[test]
fn a_recording_survives_a_crash_mid_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_dev_cluster(dir.path());
    let uri = cluster.add_user("alice", "root");
    let home = dir.path().join("alice-home");
    cluster.login(&home, "alice", &uri);
    let (node, _) = wait_for_node(&home);
    let jsh_bin = support::jsh_bin();
    let tmux = Tmux::start(
        dir.path(),
        "crash",
        &format!("JUMPGATE_HOME={} {jsh_bin} ssh root@{node}", home.display()),
        100,
        30,
    );
    tmux.type_line("echo before-$((6*7))-crash");
    tmux.wait_for("before-42-crash");
    // The node flushes its spool every 2 s.
    std::thread::sleep(Duration::from_secs(3));
    let spool = cluster.data.join("log/upload/sessions");
    let spooled: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cast"))
        .collect();
    assert_eq!(
        spooled.len(),
        1,
        "one live recording in {}",
        spool.display()
    );
    let sid = spooled[0]
        .path()
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    cluster.daemon.process.child.kill().unwrap();
    cluster.daemon.process.child.wait().unwrap();
    drop(tmux);

    let restarted = start_dev_cluster(dir.path());
    let stored = restarted.data.join("log/sessions");
    let completed = wait_until(WAIT, || {
        stored.join(format!("{sid}.complete")).exists()
            && !spool.join(format!("{sid}.cast")).exists()
    });
    assert!(
        completed,
        "the recording was not uploaded after the restart; log:\n{}",
        restarted.daemon.log_text()
    );
    let cast = std::fs::read(stored.join(format!("{sid}.cast"))).unwrap();
    let recording = jumpgate_audit::recording::parse_cast(
        &cast,
        &jumpgate_audit::recording::ParseOptions::tolerant(),
    )
    .unwrap();
    let shown = jumpgate_audit::recording::to_text(&recording);
    assert!(shown.contains("before-42-crash"), "{shown}");
}

/// Roles end sessions: `client_idle_timeout` closes a connection that sends nothing,
/// `disconnect_expired_cert` closes one whose certificate expires.
#[test]
fn roles_end_idle_sessions_and_sessions_of_expired_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let role = |name: &str, option: &str| {
        create_role(
            &cluster,
            dir.path(),
            name,
            &format!(
                "kind: role\nversion: v7\nmetadata:\n  name: {name}\nspec:\n  allow:\n    logins: [root]\n    node_labels: {{'*': '*'}}\n  options:\n    {option}\n"
            ),
        );
    };
    role("idle", "client_idle_timeout: 2s");
    role("expiring", "disconnect_expired_cert: true");
    let uri = cluster.add_user_with_roles("ivy", "idle", "root");
    let home = dir.path().join("ivy-home");
    cluster.login(&home, "ivy", &uri);
    let (node, _) = wait_for_node(&home);

    // Idle: no input for 2 s ends the connection long before the command would.
    let started = Instant::now();
    let out = jsh(&home, &["ssh", &format!("root@{node}"), "sleep 30"], None);
    let took = started.elapsed();
    assert!(!out.status.success(), "{}", text(&out.stderr));
    assert!(
        took < Duration::from_secs(15),
        "an idle session ran for {took:?}: {}",
        text(&out.stderr)
    );

    // An expiring certificate, without an idle timeout: the session runs until the
    // certificate expires (4 s), then ends, well before its command would.
    cluster.add_user_with_roles("jay", "expiring", "root");
    let key = dir.path().join("short");
    jctl_ok(
        &cluster.data,
        &[
            "auth",
            "sign",
            "--user",
            "jay",
            "--ttl",
            "4s",
            "--out",
            key.to_str().unwrap(),
        ],
    );
    let started = Instant::now();
    let out = ssh_with_key(
        &home,
        &key,
        &format!("root@{node}.{}", profile_cluster(&home)),
        "for i in $(seq 30); do echo tick; sleep 1; done",
    );
    let took = started.elapsed();
    assert!(!out.status.success(), "{}", text(&out.stderr));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "the session did not end with its certificate: {took:?}"
    );
    let ticks = text(&out.stdout).matches("tick").count();
    assert!(
        (2..20).contains(&ticks),
        "{ticks} ticks: {}",
        text(&out.stdout)
    );
}
