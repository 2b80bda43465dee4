//! `jsh scp`, `jsh recordings` and `jsh play` end to end: a real dev cluster (auth,
//! proxy and the node's SSH service, which runs OpenSSH's sftp-server for file copy),
//! users made with `jctl`, and what lands on disk checked with `sha256sum`, OpenSSH-style
//! modes and `asciinema`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::{Cluster, jsh, jsh_ok, output_within, start_dev_cluster, text, wait_until};

/// A dev cluster with its node heartbeating: (dir, cluster, node name).
fn dev_cluster() -> (tempfile::TempDir, Cluster, String) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let node = cluster.wait_for_dev_node();
    (dir, cluster, node)
}

/// A user with `roles` and the login `root` (the tests run as root), logged in into
/// `dir/NAME-home`; returns the profile directory.
fn logged_in(cluster: &Cluster, dir: &Path, name: &str, roles: &str) -> PathBuf {
    let uri = cluster.add_user_with_roles(name, roles, "root");
    let home = dir.join(format!("{name}-home"));
    cluster.login(&home, name, &uri);
    home
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `jsh scp ARGS`, which may take a while for big files (but not forever).
fn scp(home: &Path, args: &[&str]) -> Output {
    output_within(
        Command::new(support::jsh_bin())
            .arg("scp")
            .args(args)
            .env("JUMPGATE_HOME", home)
            .env_remove("SSH_AUTH_SOCK"),
        None,
        Duration::from_secs(300),
    )
}

fn scp_ok(home: &Path, args: &[&str]) -> Output {
    let out = scp(home, args);
    assert!(
        out.status.success(),
        "jsh scp {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn scp_fails(home: &Path, args: &[&str]) -> String {
    let out = scp(home, args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "jsh scp {args:?}: {stderr}");
    assert!(stderr.starts_with("jsh: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// 100 MB of random bytes up to the node and back, streamed (the test would notice a
/// whole-file buffer only as memory, so it also bounds the time).
#[test]
fn jsh_scp_round_trips_a_100_mb_file() {
    let (dir, cluster, node) = dev_cluster();
    let home = logged_in(&cluster, dir.path(), "alice", "access");
    let big = dir.path().join("big.bin");
    let mut random = std::fs::File::open("/dev/urandom")
        .unwrap()
        .take(100 * 1000 * 1000);
    std::io::copy(&mut random, &mut std::fs::File::create(&big).unwrap()).unwrap();
    set_mode(&big, 0o640);
    let remote_dir = dir.path().join("on-node");
    std::fs::create_dir(&remote_dir).unwrap();
    let remote = remote_dir.join("uploaded.bin");

    let started = std::time::Instant::now();
    let out = scp_ok(
        &home,
        &[path(&big), &format!("root@{node}:{}", path(&remote))],
    );
    let upload = started.elapsed();
    // Not a terminal: no progress bar, nothing to say.
    assert_eq!(text(&out.stderr), "");
    assert_eq!(sha256(&remote), sha256(&big));
    assert_eq!(mode(&remote), 0o640);

    let back = dir.path().join("back.bin");
    let started = std::time::Instant::now();
    scp_ok(
        &home,
        &["-q", &format!("root@{node}:{}", path(&remote)), path(&back)],
    );
    let download = started.elapsed();
    assert_eq!(sha256(&back), sha256(&big));
    assert_eq!(mode(&back), 0o640);
    eprintln!("100 MB: upload {upload:?}, download {download:?}");
    assert!(
        upload < Duration::from_secs(120) && download < Duration::from_secs(120),
        "too slow: upload {upload:?}, download {download:?}"
    );

    // Into an existing directory, under the source's name (the login's home when the
    // path is empty is covered by the tree test).
    scp_ok(
        &home,
        &[path(&big), &format!("{node}:{}", path(&remote_dir))],
    );
    assert_eq!(sha256(&remote_dir.join("big.bin")), sha256(&big));
}

/// `-r` both ways keeps the tree, the contents and the modes; and the errors a user
/// meets say what is wrong, with exit status 1.
#[test]
fn jsh_scp_copies_directory_trees_and_explains_errors() {
    let (dir, cluster, node) = dev_cluster();
    let home = logged_in(&cluster, dir.path(), "bob", "access");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::create_dir(tree.join("empty")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(tree.join("sub/b.txt"), "beta\n").unwrap();
    std::fs::write(tree.join("sub/deeper/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(tree.join("empty-file"), "").unwrap();
    set_mode(&tree.join("sub/deeper/run.sh"), 0o755);
    set_mode(&tree.join("a.txt"), 0o600);
    set_mode(&tree.join("sub"), 0o750);
    let files = [
        "a.txt",
        "empty-file",
        "sub/b.txt",
        "sub/deeper/run.sh",
        "empty",
        "sub",
        "sub/deeper",
    ];
    let same_tree = |copy: &Path| {
        for name in files {
            let (original, copied) = (tree.join(name), copy.join(name));
            assert_eq!(mode(&copied), mode(&original), "{}", copied.display());
            if original.is_file() {
                assert_eq!(
                    std::fs::read(&copied).unwrap(),
                    std::fs::read(&original).unwrap(),
                    "{}",
                    copied.display()
                );
            }
        }
    };

    // Up: into a directory that does not exist yet, it becomes the copy.
    let remote = dir.path().join("remote-tree");
    scp_ok(
        &home,
        &["-r", path(&tree), &format!("root@{node}:{}", path(&remote))],
    );
    same_tree(&remote);
    // Down: into an existing directory, under the source's name.
    let local = dir.path().join("downloads");
    std::fs::create_dir(&local).unwrap();
    scp_ok(
        &home,
        &[
            "-r",
            &format!("root@{node}:{}", path(&remote)),
            path(&local),
        ],
    );
    same_tree(&local.join("remote-tree"));
    // Several files into a directory, and a relative path from the login's home.
    let several = dir.path().join("several");
    std::fs::create_dir(&several).unwrap();
    scp_ok(
        &home,
        &[
            path(&tree.join("a.txt")),
            path(&tree.join("sub/b.txt")),
            &format!("root@{node}:{}", path(&several)),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(several.join("b.txt")).unwrap(),
        "beta\n"
    );
    let root_home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_string());
    let name = format!("jsh-scp-test-{}", std::process::id());
    scp_ok(
        &home,
        &[path(&tree.join("a.txt")), &format!("root@{node}:{name}")],
    );
    let in_home = Path::new(&root_home).join(&name);
    assert_eq!(std::fs::read_to_string(&in_home).unwrap(), "alpha\n");
    std::fs::remove_file(&in_home).unwrap();

    // A remote path that does not exist: named, with the system's words.
    let missing = dir.path().join("no/such/file");
    let stderr = scp_fails(
        &home,
        &[&format!("root@{node}:{}", path(&missing)), path(&local)],
    );
    assert!(stderr.contains(path(&missing)), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    // Up into a directory that does not exist.
    let stderr = scp_fails(
        &home,
        &[
            path(&tree.join("a.txt")),
            &format!("root@{node}:{}", path(&missing)),
        ],
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    // A local source that does not exist; the other source is still copied.
    let partial = dir.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    let stderr = scp_fails(
        &home,
        &[
            path(&dir.path().join("nope.txt")),
            path(&tree.join("a.txt")),
            &format!("root@{node}:{}", path(&partial)),
        ],
    );
    assert!(
        stderr.contains("nope.txt: No such file or directory"),
        "{stderr}"
    );
    assert!(partial.join("a.txt").exists());
    // A directory without -r.
    let stderr = scp_fails(
        &home,
        &[path(&tree), &format!("root@{node}:{}", path(&partial))],
    );
    assert!(
        stderr.contains("is a directory") && stderr.contains("-r"),
        "{stderr}"
    );
    // Permission denied on the node. The login is root, whom modes do not stop, so a
    // sysfs file that has no writer: the kernel refuses even root.
    let stderr = scp_fails(
        &home,
        &[
            path(&tree.join("a.txt")),
            &format!("root@{node}:/sys/kernel/uevent_seqnum"),
        ],
    );
    assert!(
        stderr.contains(&format!(
            "{node}:/sys/kernel/uevent_seqnum: Permission denied"
        )),
        "{stderr}"
    );
    // Several sources to something that is not a directory.
    let stderr = scp_fails(
        &home,
        &[
            path(&tree.join("a.txt")),
            path(&tree.join("sub/b.txt")),
            &format!("root@{node}:{}", path(&tree.join("a.txt"))),
        ],
    );
    assert!(stderr.contains("not a directory"), "{stderr}");
    // Between two nodes, or with nothing remote: refused before connecting.
    let stderr = scp_fails(&home, &[&format!("{node}:a"), "other:b"]);
    assert!(stderr.contains("between two nodes"), "{stderr}");
    let stderr = scp_fails(&home, &["a", "b"]);
    assert!(stderr.contains("NODE:PATH"), "{stderr}");
    // An unknown node.
    let stderr = scp_fails(&home, &[path(&tree.join("a.txt")), "root@no-such-node:x"]);
    assert!(stderr.contains("unknown node"), "{stderr}");
    assert_eq!(
        stderr.matches("`jsh ls` lists").count(),
        1,
        "the hint once: {stderr}"
    );
}

/// A role with `ssh_file_copy: false`: sftp is refused by the node, which says why,
/// both ways; the same user may still run commands.
#[test]
fn jsh_scp_is_refused_when_the_roles_forbid_file_copy() {
    let (dir, cluster, node) = dev_cluster();
    cluster.create_resource(
        dir.path(),
        "no-copy.yaml",
        "kind: role\nversion: v7\nmetadata:\n  name: no-copy\nspec:\n  allow:\n    logins: ['root']\n    node_labels: {'*': '*'}\n  options:\n    ssh_file_copy: false\n",
    );
    let home = logged_in(&cluster, dir.path(), "carol", "no-copy");
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "data\n").unwrap();
    let target = dir.path().join("copied.txt");

    let stderr = scp_fails(
        &home,
        &[path(&file), &format!("root@{node}:{}", path(&target))],
    );
    assert!(
        stderr.contains(&format!("node {node} refused file copy")),
        "{stderr}"
    );
    assert!(
        stderr.contains("file copy (sftp) is not allowed"),
        "{stderr}"
    );
    assert!(stderr.contains("carol"), "{stderr}");
    assert!(!target.exists());
    let stderr = scp_fails(
        &home,
        &[&format!("root@{node}:{}", path(&file)), path(&target)],
    );
    assert!(stderr.contains("file copy"), "{stderr}");
    assert!(!target.exists());

    let out = jsh_ok(
        &home,
        &["ssh", &format!("root@{node}"), "echo", "still-allowed"],
        None,
    );
    assert_eq!(text(&out.stdout).trim(), "still-allowed");
}

/// Spooled recordings that auth does not take (here ones no session of this node started:
/// "try again", for ever) do not hold up the others: a new session's recording still
/// arrives, and the others stay in the node's spool (nothing auth has not stored is
/// deleted).
#[test]
fn a_refused_recording_does_not_stall_the_others() {
    let (dir, cluster, node) = dev_cluster();
    let spool = cluster.data.join("log/upload/sessions");
    std::fs::create_dir_all(&spool).unwrap();
    // Several, named to sort first: the uploader meets them before the real recording.
    let refused: Vec<PathBuf> = (0..8)
        .map(|i| spool.join(format!("00000000-0000-4000-8000-00000000000{i}.cast")))
        .collect();
    for path in &refused {
        std::fs::write(path, "{\"version\": 2, \"width\": 80, \"height\": 24}\n").unwrap();
    }
    let home = logged_in(&cluster, dir.path(), "rita", "access");
    let out = jsh_ok(
        &home,
        &["ssh", "-t", &format!("root@{node}"), "echo after-a-refusal"],
        None,
    );
    assert!(
        text(&out.stdout).contains("after-a-refusal"),
        "{}",
        text(&out.stdout)
    );
    let uploaded = wait_until(Duration::from_secs(20), || {
        let out = jsh_ok(&home, &["recordings", "ls", "--format", "json"], None);
        let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        listed.iter().any(|r| r["completed"] == true)
    });
    assert!(
        uploaded,
        "the session's recording never arrived; log:\n{}",
        cluster.daemon.log_text()
    );
    assert!(
        refused.iter().all(|path| path.exists()),
        "a recording auth did not take was deleted from the spool"
    );
}

/// A PTY session is recorded by the node; `jsh recordings ls` lists it and `jsh play`
/// shows it as text, JSON, the asciicast file (which asciinema reads) and a replay.
/// Reading other users' recordings needs the `auditor` role; `access` sees one's own.
#[test]
fn jsh_plays_a_recorded_session() {
    let (dir, cluster, node) = dev_cluster();
    let home = logged_in(&cluster, dir.path(), "dora", "access,auditor");
    let out = jsh_ok(
        &home,
        &["ssh", "-t", &format!("root@{node}"), "echo recorded-marker"],
        None,
    );
    assert!(
        text(&out.stdout).contains("recorded-marker"),
        "{}",
        text(&out.stdout)
    );

    let mut listed: Vec<serde_json::Value> = Vec::new();
    let completed = wait_until(Duration::from_secs(20), || {
        let out = jsh_ok(&home, &["recordings", "ls", "--format", "json"], None);
        listed = serde_json::from_slice(&out.stdout).unwrap();
        listed.iter().any(|r| r["completed"] == true)
    });
    assert!(
        completed,
        "no completed recording appeared in 20 s: {listed:?}\nlog:\n{}",
        cluster.daemon.log_text()
    );
    let recording = listed.iter().find(|r| r["completed"] == true).unwrap();
    let id = recording["session_id"].as_str().unwrap().to_string();
    assert_eq!(recording["user"], "dora", "{recording}");
    assert_eq!(recording["login"], "root", "{recording}");
    assert_eq!(recording["node"], node.as_str(), "{recording}");
    assert!(recording["size"].as_u64().unwrap() > 0, "{recording}");

    let table = text(&jsh_ok(&home, &["recordings", "ls"], None).stdout);
    assert!(table.starts_with("Session"), "{table}");
    for column in ["Size", "Completed", "Modified", "User", "Login", "Node"] {
        assert!(table.contains(column), "{column}: {table}");
    }
    assert!(table.contains(&id) && table.contains("dora"), "{table}");

    let shown = text(&jsh_ok(&home, &["play", &id, "--format", "text"], None).stdout);
    assert!(shown.contains("recorded-marker"), "{shown}");
    assert!(
        !shown.contains('\u{1b}'),
        "escape sequences left: {shown:?}"
    );

    let events: serde_json::Value =
        serde_json::from_slice(&jsh_ok(&home, &["play", &id, "--format", "json"], None).stdout)
            .unwrap();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "output"
                && e["data"].as_str().unwrap().contains("recorded-marker")),
        "{events}"
    );

    let cast = jsh_ok(&home, &["play", &id, "--format", "asciicast"], None).stdout;
    let parsed = jumpgate_audit::recording::parse_cast(
        &cast,
        &jumpgate_audit::recording::ParseOptions::strict(),
    )
    .unwrap();
    let meta = parsed
        .header
        .jumpgate
        .expect("the header names the session");
    assert_eq!(meta.session_id.as_str(), id);
    assert_eq!(meta.user, "dora");
    let file = dir.path().join("session.cast");
    std::fs::write(&file, &cast).unwrap();
    // asciinema needs a terminal: script gives it one.
    let out = output_within(
        Command::new("script").args([
            "-qec",
            &format!("asciinema cat {}", path(&file)),
            "/dev/null",
        ]),
        None,
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "asciinema cat: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("recorded-marker"),
        "{}",
        text(&out.stdout)
    );

    // The replay (fast), to a pipe.
    let replay = text(&jsh_ok(&home, &["play", &id, "--speed", "100"], None).stdout);
    assert!(replay.contains("recorded-marker"), "{replay}");

    let out = jsh(&home, &["play", &id, "--speed", "0"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("0.001"), "{}", text(&out.stderr));
    let out = jsh(
        &home,
        &["play", "no-such-session", "--format", "text"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no recording of session"),
        "{}",
        text(&out.stderr)
    );
    let out = jsh(&home, &["play", "../etc/passwd"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid session id"),
        "{}",
        text(&out.stderr)
    );

    // With `access` alone: one's own sessions only. Eve has none yet, and dora's is
    // refused, with the way out.
    let other = logged_in(&cluster, dir.path(), "eve", "access");
    let ls = |home: &Path| -> Vec<serde_json::Value> {
        let out = jsh_ok(home, &["recordings", "ls", "--format", "json"], None);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert!(ls(&other).is_empty());
    let out = jsh(&other, &["play", &id, "--format", "text"], None);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("access denied"), "{stderr}");
    assert!(stderr.contains("auditor"), "{stderr}");
    // Once she has a session of her own, she lists and plays it, and still only it.
    jsh_ok(
        &other,
        &["ssh", "-t", &format!("root@{node}"), "echo eve-marker"],
        None,
    );
    let mut hers = Vec::new();
    let completed = wait_until(Duration::from_secs(20), || {
        hers = ls(&other);
        hers.iter().any(|r| r["completed"] == true)
    });
    assert!(completed, "eve's recording did not appear: {hers:?}");
    assert!(hers.iter().all(|r| r["user"] == "eve"), "{hers:?}");
    let eves = hers[0]["session_id"].as_str().unwrap().to_string();
    let shown = text(&jsh_ok(&other, &["play", &eves, "--format", "text"], None).stdout);
    assert!(shown.contains("eve-marker"), "{shown}");
    // The auditor sees both.
    let all = ls(&home);
    for sid in [&id, &eves] {
        assert!(
            all.iter().any(|r| r["session_id"] == sid.as_str()),
            "{sid}: {all:?}"
        );
    }
}
