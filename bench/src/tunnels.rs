//! What the two tunnel benchmarks share (`bench-tunnels`: one proxy restarted;
//! `bench-storm`: one proxy of three killed): the load tool as a child process and its
//! status lines, the daemons, and `jsh ssh` timed one after another.
#![allow(clippy::indexing_slicing)]

use crate::procs::LOGIN;
use jumpgate_test_support::{Bins, Process};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Open files the benchmark's processes may have: a tunnel is a socket at each end.
pub const OPEN_FILES: u64 = 65_536;
/// The real agent's node name, the one `jsh ssh` connects to.
pub const AGENT: &str = "bench-agent";

/// Raises this process's open-files limit (both soft and hard as root, else the soft one
/// to the hard one); children inherit it.
pub fn raise_open_files() -> u64 {
    use rlimit::Resource;
    if Resource::NOFILE.set(OPEN_FILES, OPEN_FILES).is_err() {
        let _ = rlimit::increase_nofile_limit(OPEN_FILES);
    }
    Resource::NOFILE.get().map_or(0, |(soft, _)| soft)
}

/// What the load tool printed at one tick (`key=value` pairs; counters are cumulative
/// since it started, or since its last mark where said).
#[derive(Debug, Clone, Default)]
pub struct AgentsLine {
    /// Hosts with at least one tunnel up.
    pub up: usize,
    /// Hosts with all the tunnels they were told to want (`--want`) up.
    pub full: usize,
    /// Tunnels up over all hosts.
    pub tunnels: usize,
    pub joined: usize,
    pub join_failures: usize,
    /// Hosts seen going from some tunnel to none (sampled every tick).
    pub drops: usize,
    /// Tunnel dials that failed (the tunnel code's "cannot open a reverse tunnel").
    pub failed_attempts: usize,
    /// Every WARN (or worse) event the hosts logged.
    pub warns: usize,
    /// Dials that reached a proxy the host already held, closed and retried.
    pub dup_landings: usize,
    /// Tunnels that came up.
    pub tunnel_ups: usize,
    /// Since the last mark: hosts whose last tunnel went down (counted by event, not
    /// sampled), and the most failed dials of any one host.
    pub zeroed: usize,
    pub max_failed: usize,
    pub max_landings: usize,
    /// How many marks the load tool has taken.
    pub marks: usize,
    /// Proxy identity name → tunnels it holds.
    pub holders: Vec<(String, usize)>,
}

impl AgentsLine {
    /// A status line, or `None` for any other output.
    pub fn parse(line: &str) -> Option<AgentsLine> {
        let mut parsed = AgentsLine::default();
        let mut any = false;
        for pair in line.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            if key == "holders" {
                parsed.holders = value
                    .split(',')
                    .filter_map(|holder| {
                        let (name, count) = holder.rsplit_once(':')?;
                        Some((name.to_string(), count.parse().ok()?))
                    })
                    .collect();
                continue;
            }
            let value: usize = value.parse().ok()?;
            any = true;
            let field = match key {
                "up" => &mut parsed.up,
                "full" => &mut parsed.full,
                "tunnels" => &mut parsed.tunnels,
                "joined" => &mut parsed.joined,
                "join_failures" => &mut parsed.join_failures,
                "drops" => &mut parsed.drops,
                "failed_attempts" => &mut parsed.failed_attempts,
                "warns" => &mut parsed.warns,
                "dup_landings" => &mut parsed.dup_landings,
                "tunnel_ups" => &mut parsed.tunnel_ups,
                "zeroed" => &mut parsed.zeroed,
                "max_failed" => &mut parsed.max_failed,
                "max_landings" => &mut parsed.max_landings,
                "marks" => &mut parsed.marks,
                _ => continue,
            };
            *field = value;
        }
        any.then_some(parsed)
    }
}

/// The load tool (`bench-tunnels agents`) as a child process, its status lines read by
/// a thread; stopped when dropped.
#[derive(Debug)]
pub struct Agents {
    pub process: Process,
    pub history: Arc<Mutex<Vec<(Instant, AgentsLine)>>>,
    stdin: ChildStdin,
}

/// Where the load tool dials and how it joins.
#[derive(Debug)]
pub struct AgentsSpec<'a> {
    /// The `bench-tunnels` binary.
    pub exe: &'a Path,
    /// Where tunnels go: a proxy, or a load balancer in front of several.
    pub proxy: &'a str,
    /// The auth service's own address, for the joins.
    pub auth: &'a str,
    pub token: &'a str,
    pub pin: &'a str,
    pub count: usize,
    /// Tunnels each host should hold for `full` (the strategy's count).
    pub want: usize,
    /// Its standard error.
    pub log: &'a Path,
}

impl Agents {
    pub fn spawn(spec: &AgentsSpec<'_>) -> Agents {
        let mut child = Command::new(spec.exe)
            .args(["agents", "--proxy", spec.proxy, "--auth", spec.auth])
            .args(["--token", spec.token, "--pin", spec.pin])
            .args(["--count", &spec.count.to_string()])
            .args(["--want", &spec.want.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(spec.log).unwrap())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", spec.exe.display()));
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let history: Arc<Mutex<Vec<(Instant, AgentsLine)>>> = Arc::default();
        {
            let history = history.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(parsed) = AgentsLine::parse(&line) {
                        history.lock().unwrap().push((Instant::now(), parsed));
                    }
                }
            });
        }
        Agents {
            process: Process::from_child(child, "tunnels agents", spec.log)
                .stop_gracefully_on_drop(Duration::from_secs(5)),
            history,
            stdin,
        }
    }

    pub fn latest(&self) -> AgentsLine {
        self.history
            .lock()
            .unwrap()
            .last()
            .map(|(_, line)| line.clone())
            .unwrap_or_default()
    }

    /// The first line at or after `since` for which `reached` holds, after one for which
    /// it did not.
    pub fn back_at(
        &self,
        since: Instant,
        reached: impl Fn(&AgentsLine) -> bool,
    ) -> Option<(Instant, AgentsLine)> {
        let history = self.history.lock().unwrap();
        let mut seen_down = false;
        for (at, line) in history.iter().filter(|(at, _)| *at >= since) {
            if !reached(line) {
                seen_down = true;
            } else if seen_down {
                return Some((*at, line.clone()));
            }
        }
        None
    }

    /// The lines from `from` to `to`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<(Instant, AgentsLine)> {
        self.history
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .cloned()
            .collect()
    }

    /// Starts the load tool's since-mark counters over (`zeroed`, `max_failed`,
    /// `max_landings`), and
    /// waits until a status line shows it did.
    pub fn mark(&mut self) {
        let marks = self.latest().marks;
        writeln!(self.stdin, "mark").unwrap();
        self.stdin.flush().unwrap();
        jumpgate_test_support::wait_for("the load tool's mark", Duration::from_secs(10), || {
            self.process.check_alive();
            self.latest().marks > marks
        });
    }
}

/// The auth-only daemon both benchmarks start (cluster `bench`, on a free loopback port,
/// its state in `DIR/auth`), and the CA pin that joins pin.
#[derive(Debug)]
pub struct BenchAuth {
    pub process: Process,
    pub data: PathBuf,
    pub addr: String,
    pub pin: String,
}

impl BenchAuth {
    /// Starts it with `rest` after `auth_service`'s cluster name and listen address (more
    /// of its keys, then other sections), and waits (at most 60 s) until it serves.
    pub fn start(bins: &Bins, dir: &Path, rest: &str) -> BenchAuth {
        let data = dir.join("auth");
        let addr = format!("127.0.0.1:{}", jumpgate_test_support::free_port());
        let config = write_config(
            &dir.join("auth.yaml"),
            &format!(
                "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: bench\n  listen_addr: {addr}\n{rest}",
                data.display()
            ),
        );
        let mut process = start_jumpgate(bins, &config, &dir.join("auth.log"), "auth daemon");
        jumpgate_test_support::wait_for("the auth service", Duration::from_secs(60), || {
            process.check_alive();
            data.join("admin/auth_addr").is_file()
        });
        let status = bins.jctl_ok(&data, &["status", "--format", "json"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        let pin = status["ca_pins"][0].as_str().unwrap().to_string();
        BenchAuth {
            process,
            data,
            addr,
            pin,
        }
    }

    /// `jctl tokens add --type KIND --ttl 4h [--reusable]`: the token.
    pub fn token(&self, bins: &Bins, kind: &str, reusable: bool) -> String {
        let mut args = vec!["tokens", "add", "--type", kind, "--ttl", "4h"];
        if reusable {
            args.push("--reusable");
        }
        args.extend(["--format", "json"]);
        json_field(&bins.jctl_ok(&self.data, &args), "token")
    }
}

/// A `jumpgate start -c CONFIG`, its output appended to `LOG`.
pub fn start_jumpgate(bins: &Bins, config: &Path, log: &Path, name: &str) -> Process {
    Process::spawn_appending(
        bins.jumpgate().arg("start").arg("-c").arg(config),
        name,
        log,
    )
    .stop_gracefully_on_drop(Duration::from_secs(5))
}

/// When a user connection started (since the disruption) and how it went.
pub type UserSample = (Duration, Result<Duration, String>);

/// One `jsh ssh jgbench@bench-agent true`: its wall time, or why it failed.
pub fn user_connection(jsh: &Path, home: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let mut child = Command::new(jsh)
        .env("JUMPGATE_HOME", home)
        .args(["ssh", &format!("{LOGIN}@{AGENT}"), "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let elapsed = started.elapsed();
            if status.success() {
                return Ok(elapsed);
            }
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
            }
            return Err(err.trim().to_string());
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no answer within 30 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `jsh ssh` run back to back on a thread from `since` until stopped.
#[derive(Debug)]
pub struct UserLoop {
    samples: Arc<Mutex<Vec<UserSample>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl UserLoop {
    pub fn start(jsh: &Path, home: &Path, since: Instant) -> UserLoop {
        let samples: Arc<Mutex<Vec<UserSample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            let (jsh, home) = (jsh.to_path_buf(), home.to_path_buf());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let at = since.elapsed();
                    let outcome = user_connection(&jsh, &home);
                    let failed = outcome.is_err();
                    samples.lock().unwrap().push((at, outcome));
                    if failed {
                        // A failure comes back at once; don't spin.
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        };
        UserLoop {
            samples,
            stop,
            thread,
        }
    }

    /// Stops after the connection under way; every sample.
    pub fn stop(self) -> Vec<UserSample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// The `q`-quantile (0..=1) of `samples` by the nearest-rank method.
pub fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

pub fn write_config(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

pub fn json_field(json: &str, field: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|err| panic!("not JSON ({err}):\n{json}"));
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {json}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_is_read_with_its_holders_and_other_output_is_not() {
        let line = AgentsLine::parse(
            "up=3 full=2 tunnels=5 joined=3 join_failures=0 drops=1 failed_attempts=4 warns=6 \
             dup_landings=2 tunnel_ups=7 zeroed=1 max_failed=2 max_landings=3 marks=1 holders=p-1:3,p-2:2",
        )
        .unwrap();
        assert_eq!(
            (line.up, line.full, line.tunnels, line.failed_attempts),
            (3, 2, 5, 4)
        );
        assert_eq!(
            (line.zeroed, line.max_failed, line.max_landings, line.marks),
            (1, 2, 3, 1)
        );
        assert_eq!(
            line.holders,
            vec![("p-1".to_string(), 3), ("p-2".to_string(), 2)]
        );
        // The older form (no holders) still reads.
        assert_eq!(AgentsLine::parse("up=1 joined=1").unwrap().up, 1);
        assert!(AgentsLine::parse("join load-1: refused").is_none());
        assert!(AgentsLine::parse("").is_none());
    }
}
