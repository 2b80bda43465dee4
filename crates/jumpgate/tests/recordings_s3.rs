//! Session recordings in S3 end to end: a daemon configured with
//! `audit_sessions_uri: s3://...` (auth, proxy and this host's SSH service, credentials from
//! the standard AWS environment variables) records a real PTY session into a real
//! S3-compatible server (`s3s-fs`, which checks SigV4 signatures), and `jsh recordings ls` /
//! `jsh play` read it back from there. Then the same daemon killed with SIGKILL mid-upload,
//! mid-assembly and mid-output, and restarted: nothing the node had written is lost.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{
    Cluster, Daemon, NetCut, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server, bins, free_port,
    jsh_ok, text, wait_for, wait_until,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_session_is_recorded_into_s3_and_played_back() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\n\
             jumpgate:\n  \
               data_dir: {data}\n  \
               storage:\n    \
                 audit_sessions_uri: \"s3://{S3_BUCKET}/cluster/sessions?endpoint={endpoint}&region=us-east-1\"\n\
             auth_service:\n  \
               enabled: true\n  \
               cluster_name: dev\n  \
               authentication:\n    \
                 type: local\n    \
                 second_factor: otp\n\
             proxy_service:\n  \
               enabled: true\n\
             ssh_service:\n  \
               enabled: true\n",
            data = data.display(),
            endpoint = s3.endpoint(),
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::start_with_env(
        bins(),
        &[
            "-c",
            config.to_str().unwrap(),
            "--proxy-addr",
            "127.0.0.1:0",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
        ],
        &log,
    );
    let proxy = daemon.wait_for_proxy(&data);
    let cluster = Cluster {
        bins: bins().clone(),
        daemon,
        data: data.clone(),
        proxy,
    };
    let node = cluster.wait_for_dev_node();
    let uri = cluster.add_user_with_roles("sam", "access,auditor", "root");
    let home = dir.path().join("sam-home");
    cluster.login(&home, "sam", &uri);

    let out = jsh_ok(
        &home,
        &[
            "ssh",
            "-t",
            &format!("root@{node}"),
            "echo s3-recorded-marker",
        ],
        None,
    );
    assert!(text(&out.stdout).contains("s3-recorded-marker"));

    let mut listed: Vec<serde_json::Value> = Vec::new();
    let completed = wait_until(Duration::from_secs(30), || {
        let out = jsh_ok(&home, &["recordings", "ls", "--format", "json"], None);
        listed = serde_json::from_slice(&out.stdout).unwrap();
        listed.iter().any(|r| r["completed"] == true)
    });
    assert!(
        completed,
        "no completed recording in 30 s: {listed:?}\nlog:\n{}",
        cluster.daemon.log_text()
    );
    let id = listed
        .iter()
        .find(|r| r["completed"] == true)
        .and_then(|r| r["session_id"].as_str())
        .unwrap()
        .to_string();

    // In the bucket, as one object under the prefix; nothing in the data directory.
    let object = s3
        .data_dir()
        .join(S3_BUCKET)
        .join(format!("cluster/sessions/{id}.cast"));
    let stored = std::fs::read(&object).unwrap_or_else(|err| {
        panic!(
            "{}: {err}\nlog:\n{}",
            object.display(),
            cluster.daemon.log_text()
        )
    });
    eprintln!("{} bytes in {}", stored.len(), object.display());
    assert!(
        String::from_utf8_lossy(&stored).contains("s3-recorded-marker"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
    assert!(
        !data
            .join("log/sessions")
            .join(format!("{id}.cast"))
            .exists()
    );
    let log_text = cluster.daemon.log_text();
    assert!(
        log_text.contains("session recordings are stored in S3"),
        "{log_text}"
    );
    assert!(!log_text.contains(S3_SECRET_KEY), "the secret was logged");

    let shown = text(&jsh_ok(&home, &["play", &id, "--format", "text"], None).stdout);
    assert!(shown.contains("s3-recorded-marker"), "{shown}");
}

/// Each line the crash tests' sessions print is 64 bytes (`\r\n` on the terminal).
const LINE_PAD: &str = "of the kill -9 test, padded to sixty-four bytes";
/// 16 MiB of output: 17 parts of 1 MiB in the bucket, then an assembly in 8 MiB pieces.
const LINES: usize = 262_144;

/// The session's output as its terminal shows it (the PTY turns `\n` into `\r\n`).
fn expected_output() -> Vec<u8> {
    let mut out = Vec::with_capacity(LINES * 66);
    for i in 1..=LINES {
        out.extend_from_slice(format!("line {i:08} {LINE_PAD}\r\n").as_bytes());
    }
    out.extend_from_slice(b"OUTPUT-DONE\r\n");
    out
}

/// The remote command printing [`expected_output`], a pause of `pause` seconds after every
/// `every` lines (none with 0), then staying open.
fn printing_command(every: usize, pause: &str) -> String {
    let throttle = if every == 0 {
        String::new()
    } else {
        format!("; if (i % {every} == 0) system(\"sleep {pause}\")")
    };
    format!(
        "awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) {{ printf \"line %08d {LINE_PAD}\\n\", i{throttle} }} }}'; \
         echo OUTPUT-DONE; sleep 120"
    )
}

/// The last `n` bytes of a file (empty if it does not exist yet).
fn tail(path: &Path, n: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.seek(SeekFrom::Start(len.saturating_sub(n))).unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The part objects of a recording in s3s-fs's directory: (offset, size), by offset.
fn part_objects(session_dir: &Path) -> Vec<(u64, u64)> {
    let Ok(entries) = std::fs::read_dir(session_dir.join("parts")) else {
        return Vec::new();
    };
    let mut parts: Vec<(u64, u64)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            let (offset, _) = name.split_once('-')?;
            Some((offset.parse().ok()?, entry.metadata().ok()?.len()))
        })
        .collect();
    parts.sort_unstable();
    parts
}

/// Where the bytes the parts cover from offset 0 end (parts never leave a gap).
fn covered(parts: &[(u64, u64)]) -> u64 {
    let mut end = 0;
    for (offset, size) in parts {
        if *offset > end {
            break;
        }
        end = end.max(offset + size);
    }
    end
}

/// The terminal output of a recording, from its first numbered line on.
fn recorded_lines(recording: &jumpgate_audit::recording::Recording) -> Vec<u8> {
    let mut output = Vec::new();
    for event in &recording.events {
        if event.kind == jumpgate_audit::recording::EventKind::Output {
            output.extend_from_slice(event.data.as_bytes());
        }
    }
    let start = output
        .windows(13)
        .position(|w| w == b"line 00000001")
        .expect("the first line is in the recording");
    assert!(start < 1024, "{start} bytes before the first line");
    output.split_off(start)
}

/// Fails unless `recorded` is the start of `expected`, naming the first differing byte.
fn assert_prefix(recorded: &[u8], expected: &[u8]) {
    let same = recorded
        .iter()
        .zip(expected)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        same == recorded.len() && recorded.len() <= expected.len(),
        "the recorded output ({} bytes) differs from what the session printed at byte {same}: {:?}",
        recorded.len(),
        text(&recorded[same..recorded.len().min(same + 80)])
    );
}

/// Kills the client on drop: the tests never leave a `jsh ssh` behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The crash tests' cluster: one daemon (auth with recordings in s3s-fs, proxy, and this
/// host's SSH service) whose requests to S3 pass through a [`NetCut`], so a test can hold
/// them in flight; restarted on the same config, data directory and proxy port.
struct CrashRig {
    s3: S3Server,
    net: Arc<NetCut>,
    dir: tempfile::TempDir,
    config: PathBuf,
    proxy_addr: String,
    cluster: Cluster,
    node: String,
    home: PathBuf,
}

impl CrashRig {
    async fn start() -> CrashRig {
        let s3 = S3Server::start().await;
        let net = Arc::new(NetCut::start(&format!("127.0.0.1:{}", s3.port())).await);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("jumpgate.yaml");
        std::fs::write(
            &config,
            format!(
                "version: v3\n\
                 jumpgate:\n  \
                   data_dir: {data}\n  \
                   storage:\n    \
                     audit_sessions_uri: \"s3://{S3_BUCKET}/cluster/sessions?endpoint=http://{endpoint}&region=us-east-1\"\n\
                 auth_service:\n  \
                   enabled: true\n  \
                   cluster_name: dev\n  \
                   authentication:\n    \
                     type: local\n    \
                     second_factor: otp\n\
                 proxy_service:\n  \
                   enabled: true\n\
                 ssh_service:\n  \
                   enabled: true\n",
                data = data.display(),
                endpoint = net.addr(),
            ),
        )
        .unwrap();
        // The same proxy port on every start, so the user's profile keeps working.
        let proxy_addr = format!("127.0.0.1:{}", free_port());
        let daemon = start_daemon(&config, &proxy_addr, &dir.path().join("daemon-1.log"));
        let proxy = daemon.wait_for_proxy(&data);
        let cluster = Cluster {
            bins: bins().clone(),
            daemon,
            data,
            proxy,
        };
        let node = cluster.wait_for_dev_node();
        let uri = cluster.add_user_with_roles("sam", "access,auditor", "root");
        let home = dir.path().join("sam-home");
        cluster.login(&home, "sam", &uri);
        CrashRig {
            s3,
            net,
            dir,
            config,
            proxy_addr,
            cluster,
            node,
            home,
        }
    }

    /// Starts the daemon again (after [`CrashRig::kill`]), logging to `log`, until its
    /// auth and proxy are ready.
    fn restart(&mut self, log: &str) {
        self.cluster.daemon =
            start_daemon(&self.config, &self.proxy_addr, &self.dir.path().join(log));
        self.cluster.daemon.wait_for_proxy(&self.cluster.data);
    }

    /// `kill -9` of the whole daemon, and its exit.
    fn kill(&mut self) {
        self.cluster.daemon.process.child.kill().unwrap();
        self.cluster.daemon.process.child.wait().unwrap();
    }

    /// `jsh ssh -t root@NODE COMMAND` in the background, its output in `client.out`; returns
    /// it and the session id, once the node spools the session.
    fn start_session(&self, command: &str) -> (KillOnDrop, String) {
        let client = KillOnDrop(
            bins()
                .jsh_command(&self.home)
                .args(["ssh", "-t", &format!("root@{}", self.node), command])
                // Held open: end of input must not end the session.
                .stdin(Stdio::piped())
                .stdout(std::fs::File::create(self.client_out()).unwrap())
                .stderr(std::fs::File::create(self.dir.path().join("client.err")).unwrap())
                .spawn()
                .unwrap(),
        );
        let spool_dir = self.cluster.data.join("log/upload/sessions");
        let mut sid = String::new();
        wait_for(
            "the node to spool the session",
            Duration::from_secs(30),
            || {
                let found = std::fs::read_dir(&spool_dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .find_map(|e| {
                        let path = e.path();
                        (path.extension()? == "cast")
                            .then(|| path.file_stem()?.to_str().map(str::to_string))?
                    });
                if let Some(found) = found {
                    sid = found;
                }
                !sid.is_empty()
            },
        );
        (client, sid)
    }

    fn client_out(&self) -> PathBuf {
        self.dir.path().join("client.out")
    }

    /// The node's local copy of a recording.
    fn spool(&self, sid: &str) -> PathBuf {
        self.cluster
            .data
            .join("log/upload/sessions")
            .join(format!("{sid}.cast"))
    }

    /// Where s3s-fs keeps a recording's parts and state (`SID/`).
    fn session_dir(&self, sid: &str) -> PathBuf {
        self.s3
            .data_dir()
            .join(S3_BUCKET)
            .join("cluster/sessions")
            .join(sid)
    }

    /// Where s3s-fs keeps a completed recording (`SID.cast`).
    fn cast_object(&self, sid: &str) -> PathBuf {
        self.s3
            .data_dir()
            .join(S3_BUCKET)
            .join(format!("cluster/sessions/{sid}.cast"))
    }

    /// Holds every request to S3 as soon as the first part of `sid` is in the bucket.
    fn cut_after_first_part(&self, sid: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while part_objects(&self.session_dir(sid)).is_empty() {
            assert!(
                Instant::now() < deadline,
                "no part of {sid} reached the bucket in 60 s; log:\n{}",
                self.cluster.daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        self.net.cut();
    }

    /// Waits until the recording is completed and assembled in the bucket, its parts and
    /// the node's copy gone; then checks that the object, `jsh recordings ls` and
    /// `jsh play` all hold exactly `written` (the node's copy at the kill). Returns what
    /// `jsh play` parsed.
    fn assert_completed_as(
        &self,
        sid: &str,
        written: &[u8],
    ) -> jumpgate_audit::recording::Recording {
        let (cast, spool, session_dir) = (
            self.cast_object(sid),
            self.spool(sid),
            self.session_dir(sid),
        );
        let done = wait_until(Duration::from_secs(120), || {
            // The node deletes its copy, then the mark that the session ended: both.
            cast.exists()
                && !spool.exists()
                && !spool.with_extension("done").exists()
                && part_objects(&session_dir).is_empty()
        });
        assert!(
            done,
            "{sid} was not completed after the restart (object {}, spool {}, {} parts); log:\n{}",
            cast.exists(),
            spool.exists(),
            part_objects(&session_dir).len(),
            self.cluster.daemon.log_text()
        );
        let stored = std::fs::read(&cast).unwrap();
        assert_eq!(
            stored.len(),
            written.len(),
            "the bucket's object is not the node's copy as written before the kill"
        );
        assert!(
            stored == written,
            "the bucket's object differs from the node's copy"
        );

        let listed = jsh_ok(&self.home, &["recordings", "ls", "--format", "json"], None);
        let listed: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
        let entry = listed
            .iter()
            .find(|r| r["session_id"] == sid)
            .unwrap_or_else(|| panic!("{sid} not listed: {listed:?}"));
        assert_eq!(entry["completed"], true, "{entry}");
        assert_eq!(entry["size"], written.len() as u64, "{entry}");

        let played = jsh_ok(&self.home, &["play", sid, "--format", "asciicast"], None).stdout;
        assert!(
            played == written,
            "jsh play returned {} bytes, the node wrote {}",
            played.len(),
            written.len()
        );
        jumpgate_audit::recording::parse_cast(
            &played,
            &jumpgate_audit::recording::ParseOptions::tolerant(),
        )
        .unwrap()
    }
}

fn start_daemon(config: &Path, proxy_addr: &str, log: &Path) -> Daemon {
    Daemon::start_with_env(
        bins(),
        &["-c", config.to_str().unwrap(), "--proxy-addr", proxy_addr],
        &[
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
        ],
        log,
    )
}

/// A recording survives `kill -9` of the whole daemon (auth with its S3 store, proxy and the
/// recording node in one process) twice: first mid-session, with the session's 16 MiB of
/// output on the node's disk and only part of it in the bucket while a request to S3 is in
/// flight; then, after a restart, while auth is completing it (state object written, the
/// whole object not yet assembled). Requests in flight are held with a [`NetCut`] between the
/// daemon and s3s-fs (what a slow network does), so each kill lands where it should, every
/// time. After the last restart the node has uploaded the rest from its spool and auth has
/// assembled it: the bucket's object, and what `jsh play` returns, are byte for byte the
/// spool as it was at the first kill, and its output is exactly what the session printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_in_s3_survives_kill_9_mid_upload_and_mid_assembly() {
    let mut rig = CrashRig::start().await;
    let (client, sid) = rig.start_session(&printing_command(0, ""));
    let (spool, session_dir) = (rig.spool(&sid), rig.session_dir(&sid));

    // Crash 1: mid-upload, after the session printed everything.
    rig.cut_after_first_part(&sid);
    let mut client_tail = Vec::new();
    let printed = wait_until(Duration::from_secs(180), || {
        client_tail = tail(&rig.client_out(), 64);
        contains(&client_tail, b"OUTPUT-DONE")
    });
    assert!(
        printed,
        "the client never got the end of the output: {:?}\n{}",
        text(&client_tail),
        std::fs::read_to_string(rig.dir.path().join("client.err")).unwrap_or_default()
    );
    // The node writes its spool every 2 s: then everything the session printed is on disk.
    wait_for(
        "the spool to hold the whole output",
        Duration::from_secs(20),
        || {
            // The event's JSON (`\r\n` escaped), not the command in the header.
            contains(&tail(&spool, 256), br"OUTPUT-DONE\r\n")
        },
    );
    let in_bucket = covered(&part_objects(&session_dir));
    let spooled = file_len(&spool);
    assert!(
        0 < in_bucket && in_bucket < spooled,
        "the kill must land mid-upload: {in_bucket} of {spooled} bytes in the bucket"
    );
    rig.kill();
    eprintln!("crash 1: killed with {in_bucket} of {spooled} spooled bytes in the bucket");
    // What the node had written when it died: the recording must end up exactly this.
    let written = std::fs::read(&spool).unwrap();
    assert!(
        !spool.with_extension("done").exists(),
        "the session was live at the kill"
    );
    drop(client);
    rig.net.heal();

    // Crash 2: the restarted node uploads the rest and completes the recording; cut and kill
    // as soon as auth starts completing it (the state object), before the whole object
    // exists. Watched from a thread started first: the node's first upload pass may run
    // before the daemon reports ready.
    let state = session_dir.join("state");
    let watcher = {
        let (net, state, cast) = (rig.net.clone(), state.clone(), rig.cast_object(&sid));
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !state.exists() {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            net.cut();
            Some(cast.exists())
        })
    };
    rig.restart("daemon-2.log");
    match watcher.join().unwrap() {
        None => panic!(
            "the restarted node never completed {sid} (no state object in 120 s); log:\n{}",
            rig.cluster.daemon.log_text()
        ),
        Some(assembled) => assert!(
            !assembled,
            "the kill must land before the recording is assembled"
        ),
    }
    rig.kill();
    let parts = part_objects(&session_dir);
    eprintln!(
        "crash 2: killed while completing; state {:?}, {} parts covering {} bytes",
        std::fs::read_to_string(&state).unwrap_or_default(),
        parts.len(),
        covered(&parts)
    );
    let log = std::fs::read_to_string(rig.dir.path().join("daemon-2.log")).unwrap();
    assert!(
        log.contains("a session recording from before a restart"),
        "{log}"
    );
    rig.net.heal();

    // After the last restart: completed and assembled, exactly what the node wrote, and
    // exactly what the session printed (and the client saw).
    rig.restart("daemon-3.log");
    let recording = rig.assert_completed_as(&sid, &written);
    assert!(recording.truncated.is_none(), "{:?}", recording.truncated);
    let expected = expected_output();
    let recorded = recorded_lines(&recording);
    assert_prefix(&recorded, &expected);
    assert_eq!(
        recorded.len(),
        expected.len(),
        "the recorded output ends early"
    );
    let seen = std::fs::read(rig.client_out()).unwrap();
    assert!(
        contains(&tail(&rig.client_out(), 64), b"OUTPUT-DONE") && seen.len() >= expected.len(),
        "the client's copy is incomplete"
    );
}

/// `kill -9` while the session is still printing (a 16 MiB stream, paced) and a request to
/// S3 is in flight: the node's copy may end anywhere, even inside a line. After a restart the
/// stored recording is byte for byte that copy, and its output is an unbroken start of what
/// the session printed (no byte missing or repeated inside it), holding all the output the
/// copy held a moment before the kill. A cut-off last line is dropped by readers, never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_in_s3_survives_kill_9_while_the_session_prints() {
    let mut rig = CrashRig::start().await;
    // 1 MiB about every 0.7 s: the output flows for more than 10 s, longer than the node's
    // first upload passes (every 5 s) take to put a part in the bucket.
    let (client, sid) = rig.start_session(&printing_command(16_384, "0.7"));
    let spool = rig.spool(&sid);
    rig.cut_after_first_part(&sid);
    let early = std::fs::read(&spool).unwrap();
    let grown = early.len() as u64 + (1 << 20);
    wait_for(
        "the node's copy to grow by 1 MiB more",
        Duration::from_secs(60),
        || file_len(&spool) > grown,
    );
    rig.kill();
    let written = std::fs::read(&spool).unwrap();
    let in_bucket = covered(&part_objects(&rig.session_dir(&sid)));
    eprintln!(
        "killed while printing: {} bytes in the node's copy ({} a moment before), {in_bucket} in \
         the bucket, {} bytes at the client",
        written.len(),
        early.len(),
        file_len(&rig.client_out())
    );
    assert!(
        0 < in_bucket && in_bucket < written.len() as u64,
        "the kill must land mid-upload: {in_bucket} of {} bytes in the bucket",
        written.len()
    );
    assert!(
        !contains(&written, br"OUTPUT-DONE\r\n"),
        "the kill must land while the session prints"
    );
    drop(client);
    rig.net.heal();

    rig.restart("daemon-2.log");
    let recording = rig.assert_completed_as(&sid, &written);
    let recorded = recorded_lines(&recording);
    assert_prefix(&recorded, &expected_output());
    // Every byte of output the node's copy held a moment before the kill is there.
    let before = recorded_lines(
        &jumpgate_audit::recording::parse_cast(
            &early,
            &jumpgate_audit::recording::ParseOptions::tolerant(),
        )
        .unwrap(),
    );
    assert!(
        recorded.starts_with(&before),
        "{} bytes of output recorded, {} were in the node's copy a moment before the kill",
        recorded.len(),
        before.len()
    );
    eprintln!(
        "recorded {} bytes of output; last line cut off: {}",
        recorded.len(),
        recording.truncated.is_some()
    );
}
