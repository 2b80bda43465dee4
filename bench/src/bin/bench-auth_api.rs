//! Login and certificate issuance throughput through the real daemon: `jumpgate start
//! --dev` as a child process, called over gRPC and mutual TLS the way `jctl` and the proxy
//! call it, against OpenSSH's `ssh-keygen -s` in the same run on the same machine.
//!
//! `cargo build --release -p jumpgate -p jsh`
//! `cargo run --release -p jumpgate-bench --bin bench-auth_api -- [SIGN_COUNT] [LOGIN_USERS] [KEYGEN_COUNT]`
//!
//! Defaults: 2000 `SignUser` calls per row, 64 users per login row, 100 `ssh-keygen` runs.
//! `JUMPGATE_BIN_DIR` overrides where the binaries are (default `target/release`).
//!
//! What is measured:
//! - `SignUser` as the admin for user `alice` (role `access`, logins alice and ubuntu): an
//!   SSH certificate for a pre-generated key, then an SSH and an X.509 certificate per call
//!   (what a login returns). Concurrency 1 and 16 (tokio tasks sharing one HTTP/2
//!   connection). Every call is authorised and writes an audit event (fsynced).
//! - `Login` as a proxy (joined with a join token): password (argon2id) + TOTP, both
//!   certificates, audit events. Concurrency 1 and 8. Each user logs in once (TOTP codes are
//!   single-use per 30 s step), and every login claims its own client address, because the
//!   server rate-limits logins per client address (10, then one per 6 s).
//! - The alternatives and floors: `ssh-keygen -s CA -I alice -n alice,ubuntu -V +12h`, one
//!   process per certificate (a plain OpenSSH CA, as admins sign without Jumpgate), and an
//!   in-process argon2id verification with the same (default) parameters on one core.
//!
//! The client runs on the same machine, so it shares the cores with the daemon.
// A benchmark binary: a failed setup step or a failed call should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use jumpgate_api::AuthClient;
use jumpgate_api::proto::{
    CreateJoinTokenRequest, CreateUserRequest, JoinRequest, LoginRequest, SignUserRequest,
    StatusRequest,
};
use jumpgate_api::{TlsCredentials, connect};
use jumpgate_bench::{git_commit, load_average, rate, ssh_keygen_sign};
use jumpgate_pki::{CaKind, SshCa, generate_ssh_key, generate_tls_key};
use jumpgate_test_support::{Bins, Daemon};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct-horse-battery-staple-42";

/// How a batch of calls went.
struct Outcome {
    count: usize,
    elapsed: Duration,
    errors: Vec<String>,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        rate(self.count - self.errors.len(), self.elapsed)
    }
}

/// Runs `call` on every item with `concurrency` tasks taking items from one queue.
async fn run_concurrent<T, F, Fut>(items: Vec<T>, concurrency: usize, call: F) -> Outcome
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let count = items.len();
    let queue = Arc::new(Mutex::new(items.into_iter()));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let queue = queue.clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            loop {
                let next = queue.lock().unwrap().next();
                let Some(item) = next else { break };
                if let Err(err) = call(item).await {
                    errors.push(err);
                }
            }
            errors
        }));
    }
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    Outcome {
        count,
        elapsed: started.elapsed(),
        errors,
    }
}

fn sign_requests(count: usize, with_tls: bool) -> Vec<SignUserRequest> {
    (0..count)
        .map(|_| SignUserRequest {
            user: "alice".to_string(),
            ssh_public_key: generate_ssh_key("alice@bench").unwrap().public_openssh,
            tls_public_key_pem: if with_tls {
                generate_tls_key().unwrap().1
            } else {
                String::new()
            },
            ttl_seconds: 0,
        })
        .collect()
}

async fn sign_users(
    client: &AuthClient,
    requests: Vec<SignUserRequest>,
    concurrency: usize,
) -> Outcome {
    let client = client.clone();
    run_concurrent(requests, concurrency, move |request| {
        let mut client = client.clone();
        async move {
            let with_tls = !request.tls_public_key_pem.is_empty();
            let response = client
                .sign_user(request)
                .await
                .map_err(|status| format!("SignUser: {status}"))?
                .into_inner();
            if response.ssh_certificate.is_empty()
                || (with_tls && response.tls_certificate_pem.is_empty())
            {
                return Err("SignUser: a certificate is missing".to_string());
            }
            Ok(())
        }
    })
    .await
}

/// One login's inputs, prepared outside the timed loop (except the TOTP code).
struct LoginInput {
    user: String,
    totp: totp_rs::Totp,
    ssh_public_key: String,
    tls_public_key_pem: String,
    client_addr: String,
}

async fn logins(proxy: &AuthClient, inputs: Vec<LoginInput>, concurrency: usize) -> Outcome {
    let proxy = proxy.clone();
    run_concurrent(inputs, concurrency, move |input| {
        let mut proxy = proxy.clone();
        async move {
            let request = LoginRequest {
                user: input.user.clone(),
                password: PASSWORD.to_string(),
                otp: input.totp.generate_current().to_string(),
                ssh_public_key: input.ssh_public_key,
                tls_public_key_pem: input.tls_public_key_pem,
                ttl_seconds: 0,
                client_addr: input.client_addr,
            };
            let response = proxy
                .login(request)
                .await
                .map_err(|status| format!("Login {}: {status}", input.user))?
                .into_inner();
            if response.ssh_certificate.is_empty() || response.tls_certificate_pem.is_empty() {
                return Err(format!("Login {}: a certificate is missing", input.user));
            }
            Ok(())
        }
    })
    .await
}

/// Creates `count` users with a password and returns their TOTP generators.
async fn create_users(
    admin: &AuthClient,
    prefix: &str,
    count: usize,
) -> Vec<(String, totp_rs::Totp)> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i:04}")).collect();
    let created = Arc::new(Mutex::new(Vec::new()));
    let sink = created.clone();
    let admin = admin.clone();
    let outcome = run_concurrent(names, 4, move |name| {
        let mut admin = admin.clone();
        let sink = sink.clone();
        async move {
            let response = admin
                .create_user(CreateUserRequest {
                    name: name.clone(),
                    roles: vec!["access".to_string()],
                    logins: vec![name.clone(), "ubuntu".to_string()],
                    password: PASSWORD.to_string(),
                })
                .await
                .map_err(|status| format!("CreateUser {name}: {status}"))?
                .into_inner();
            assert!(
                !response.otpauth_uri.is_empty(),
                "CreateUser {name}: no otpauth URI (is TOTP off in --dev?)"
            );
            let totp = totp_rs::Totp::from_url(&response.otpauth_uri)
                .map_err(|err| format!("{name}: otpauth URI {:?}: {err}", response.otpauth_uri))?;
            sink.lock().unwrap().push((name, totp));
            Ok(())
        }
    })
    .await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let mut users = std::mem::take(&mut *created.lock().unwrap());
    users.sort_by(|a, b| a.0.cmp(&b.0));
    users
}

fn login_inputs(users: Vec<(String, totp_rs::Totp)>, first_addr: usize) -> Vec<LoginInput> {
    users
        .into_iter()
        .enumerate()
        .map(|(i, (user, totp))| {
            let n = first_addr + i;
            LoginInput {
                ssh_public_key: generate_ssh_key(&user).unwrap().public_openssh,
                tls_public_key_pem: generate_tls_key().unwrap().1,
                user,
                totp,
                // One client address per login: the per-address rate limit is not
                // what is measured. The server takes a proxy's word for it.
                client_addr: format!("10.9.{}.{}:1234", n / 250, n % 250 + 1),
            }
        })
        .collect()
}

/// Joins as a proxy with a join token, the way a proxy host does, and returns the proxy's
/// client.
async fn join_proxy(admin: &mut AuthClient, addr: &str) -> AuthClient {
    let ca_pins = admin
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .ca_pins;
    let token = admin
        .create_join_token(CreateJoinTokenRequest {
            roles: vec!["proxy".to_string()],
            ttl_seconds: 0,
            reusable: false,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut anonymous = connect(
        addr,
        jumpgate_api::tls::pinned_client_config(&ca_pins).unwrap(),
    )
    .await
    .unwrap();
    let ssh = generate_ssh_key("bench-proxy").unwrap();
    let (tls_key, tls_public) = generate_tls_key().unwrap();
    let joined = anonymous
        .join(JoinRequest {
            token,
            role: "proxy".to_string(),
            host_name: "bench-proxy".to_string(),
            host_uuid: "6a0d8f7e-3b1c-4f52-9e41-b3c4be4c0001".to_string(),
            ssh_public_key: ssh.public_openssh,
            tls_public_key_pem: tls_public,
            addresses: vec!["127.0.0.1".to_string()],
            client_addr: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("Join as proxy: {status}"))
        .into_inner();
    let credentials = TlsCredentials::from_pem(
        &joined.tls_certificate_pem,
        &tls_key,
        &joined.tls_ca_pems.concat(),
    )
    .unwrap();
    connect(addr, credentials.client_config().unwrap())
        .await
        .unwrap()
}

/// `ssh-keygen -s` with a plain OpenSSH CA, one process per certificate.
fn ssh_keygen(count: usize) -> Duration {
    let ca = SshCa::generate(CaKind::User, "bench").unwrap();
    let key = generate_ssh_key("alice@bench").unwrap();
    ssh_keygen_sign(&ca, &key.public_openssh, count)
}

/// In-process argon2id verifications with the default parameters (what the server uses),
/// on the calling thread.
fn argon2_verify(count: usize) -> Duration {
    let hash = Argon2::default()
        .hash_password(PASSWORD.as_bytes())
        .unwrap()
        .to_string();
    let started = Instant::now();
    for _ in 0..count {
        Argon2::default()
            .verify_password(PASSWORD.as_bytes(), hash.as_str())
            .unwrap();
    }
    started.elapsed()
}

fn arg(n: usize, default: usize, name: &str) -> usize {
    std::env::args()
        .nth(n)
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn row(operation: &str, calls: usize, per_second: f64, certs: Option<usize>) {
    let certs = certs.map_or_else(
        || "-".to_string(),
        |certs| format!("{:.1}", per_second * certs as f64),
    );
    println!("{operation:<62} {calls:>6} {per_second:>10.1} {certs:>10}");
}

#[tokio::main]
async fn main() {
    let sign_count = arg(1, 2000, "SIGN_COUNT");
    let login_users = arg(2, 64, "LOGIN_USERS");
    let keygen_count = arg(3, 100, "KEYGEN_COUNT");
    let argon2_count = 50;
    let load_before = load_average();

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let daemon = Daemon::start_dev(&Bins::release(), &data_dir, &data_dir.with_extension("log"));
    let admin_dir = data_dir.join("admin");
    let read = |name: &str| std::fs::read_to_string(admin_dir.join(name)).unwrap();
    let addr = read("auth_addr").trim().to_string();
    let admin_tls = TlsCredentials::from_pem(&read("cert.pem"), &read("key.pem"), &read("ca.pem"))
        .unwrap()
        .client_config()
        .unwrap();
    let mut admin = connect(&addr, admin_tls).await.unwrap();
    admin
        .create_user(CreateUserRequest {
            name: "alice".to_string(),
            roles: vec!["access".to_string()],
            logins: vec!["alice".to_string(), "ubuntu".to_string()],
            password: PASSWORD.to_string(),
        })
        .await
        .unwrap_or_else(|status| panic!("CreateUser alice: {status}"));

    // Keys outside the timed loops; a short warm-up of the connection and caches.
    let warm_up = sign_users(&admin, sign_requests(50, true), 4).await;
    assert!(warm_up.errors.is_empty(), "{:?}", warm_up.errors);
    let mut sign_outcomes = Vec::new();
    for (with_tls, concurrency) in [(false, 1), (false, 16), (true, 1), (true, 16)] {
        let requests = sign_requests(sign_count, with_tls);
        let outcome = sign_users(&admin, requests, concurrency).await;
        sign_outcomes.push((with_tls, concurrency, outcome));
    }

    let mut proxy = join_proxy(&mut admin, &addr).await;
    let caller = proxy
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .caller;
    let set_up = Instant::now();
    let users_1 = create_users(&admin, "bench-a-", login_users).await;
    let users_8 = create_users(&admin, "bench-b-", login_users).await;
    let create_elapsed = set_up.elapsed();
    let inputs_1 = login_inputs(users_1, 0);
    let inputs_8 = login_inputs(users_8, login_users);
    let login_1 = logins(&proxy, inputs_1, 1).await;
    let login_8 = logins(&proxy, inputs_8, 8).await;
    drop(daemon);

    // The alternatives and floors, with the daemon stopped.
    let keygen = ssh_keygen(keygen_count);
    let argon2 = argon2_verify(argon2_count);

    println!(
        "auth API through the daemon (gRPC + mutual TLS) on this machine ({} cores; \
         load average {load_before} before, {} after)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load_average()
    );
    println!(
        "{:<62} {:>6} {:>10} {:>10}",
        "operation", "calls", "calls/s", "certs/s"
    );
    for (with_tls, concurrency, outcome) in &sign_outcomes {
        let what = if *with_tls { "SSH + X.509" } else { "SSH" };
        row(
            &format!("API SignUser, {what}, concurrency {concurrency}"),
            outcome.count,
            outcome.per_second(),
            Some(if *with_tls { 2 } else { 1 }),
        );
    }
    for (concurrency, outcome) in [(1, &login_1), (8, &login_8)] {
        row(
            &format!("API Login (argon2id+TOTP, SSH + X.509), concurrency {concurrency}"),
            outcome.count,
            outcome.per_second(),
            Some(2),
        );
    }
    row(
        "openssh ssh-keygen -s (process per cert)",
        keygen_count,
        rate(keygen_count, keygen),
        Some(1),
    );
    row(
        "in-process argon2id verify (default params, 1 core)",
        argon2_count,
        rate(argon2_count, argon2),
        None,
    );
    let sign_16 = sign_outcomes
        .iter()
        .find(|(with_tls, concurrency, _)| !with_tls && *concurrency == 16)
        .map(|(_, _, outcome)| outcome.per_second())
        .unwrap();
    let argon2_rate = rate(argon2_count, argon2);
    println!(
        "ratio API SignUser (SSH, concurrency 16)/ssh-keygen: {:.1}x",
        sign_16 / rate(keygen_count, keygen)
    );
    println!(
        "ratio API Login/argon2id verify on 1 core: concurrency 1 {:.2}, concurrency 8 {:.2}",
        login_1.per_second() / argon2_rate,
        login_8.per_second() / argon2_rate
    );
    println!(
        "(set-up, untimed: {} users created in {:.1} s; login caller: {caller})",
        2 * login_users,
        create_elapsed.as_secs_f64()
    );
    let record = serde_json::json!({
        "bench": "auth_api",
        "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "commit": git_commit(),
        "command": format!("target/release/bench-auth_api {sign_count} {login_users} {keygen_count}"),
        "load_average_before": load_before,
        "sign_user_calls_per_second": sign_outcomes.iter()
            .map(|(with_tls, concurrency, outcome)| serde_json::json!({
                "certificates": if *with_tls { "ssh+x509" } else { "ssh" },
                "concurrency": concurrency,
                "calls_per_second": outcome.per_second(),
                "certs_per_second": outcome.per_second() * if *with_tls { 2.0 } else { 1.0 },
            }))
            .collect::<Vec<_>>(),
        "login_per_second": {"concurrency_1": login_1.per_second(), "concurrency_8": login_8.per_second()},
        "ssh_keygen_sign_per_second": rate(keygen_count, keygen),
        "argon2id_verify_per_second_one_core": argon2_rate,
        "ratio_sign_user_ssh_c16_over_ssh_keygen": sign_16 / rate(keygen_count, keygen),
    });
    println!("JSON: {record}");
    let errors: Vec<&String> = sign_outcomes
        .iter()
        .flat_map(|(_, _, outcome)| outcome.errors.iter())
        .chain(login_1.errors.iter())
        .chain(login_8.errors.iter())
        .collect();
    if !errors.is_empty() {
        println!("{} calls failed; the first ones:", errors.len());
        for error in errors.iter().take(10) {
            println!("  {error}");
        }
        std::process::exit(1);
    }
}
