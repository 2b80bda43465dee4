//! `jsh`: the user's tool. Each command is a thin layer over `jumpgate_client`: parse
//! the arguments, prompt where needed, print the result.

use crate::cli::{
    JshCli, JshCommand, LoginArgs, LsArgs, MfaCommand, OutputFormat, PlayArgs, PlayFormat,
    ProxyCommand, RecordingsCommand, ScpArgs, SshArgs,
};
use anyhow::{Context, Result, anyhow, bail};
use jumpgate_api::ssh_route::RELAY_BUFFER;
use jumpgate_client::nodes::{self, LabelFilter};
use jumpgate_client::openssh::{openssh_config, strip_cluster_suffix};
use jumpgate_client::scp::{self, CopyOptions, CopyPlan};
use jumpgate_client::ssh::{Forwarding, PtyRequest, SessionIo, SessionRequest};
use jumpgate_client::terminal::{self, RawMode};
use jumpgate_client::{
    ClientError, ForwardSpec, Home, LoginParams, Password, Profile, ProxyAddr, WebTrust,
};
use jumpgate_client::{mfa, recordings};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// Exit status for a failure to reach or log in to a node, as OpenSSH's `ssh`.
const EXIT_CONNECTION: u8 = 255;

/// The `jsh` program.
pub fn jsh_main() -> ExitCode {
    use clap::Parser;
    let cli = JshCli::parse();
    if cli.debug {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter("debug")
            .try_init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("jsh: error: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let connects = matches!(cli.command, JshCommand::Ssh(_) | JshCommand::Proxy(_));
    let outcome = runtime.block_on(run(cli.command));
    // Standard input is read by a blocking thread that cannot be cancelled: do not wait
    // for it (the process ends now anyway).
    runtime.shutdown_background();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!(
                "jsh: error: {}",
                jumpgate_api::client::error_chain(err.as_ref())
            );
            ExitCode::from(if connects { EXIT_CONNECTION } else { 1 })
        }
    }
}

async fn run(command: JshCommand) -> Result<u8> {
    match command {
        JshCommand::Login(args) => login(args).await.map(|()| 0),
        JshCommand::Status => status().map(|()| 0),
        JshCommand::Logout => logout().map(|()| 0),
        JshCommand::Ls(args) => ls(args).await.map(|()| 0),
        JshCommand::Ssh(args) => ssh(args).await,
        JshCommand::Scp(args) => scp(args).await,
        JshCommand::Recordings(RecordingsCommand::Ls { format }) => {
            recordings_ls(format).await.map(|()| 0)
        }
        JshCommand::Play(args) => play(args).await.map(|()| 0),
        JshCommand::Mfa(command) => mfa(command).await.map(|()| 0),
        JshCommand::Config => config().map(|()| 0),
        JshCommand::Proxy(ProxyCommand::Ssh { target }) => proxy_ssh(&target).await,
        JshCommand::Version => {
            println!("jsh {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
    }
}

fn home() -> Result<Home> {
    Ok(Home::from_env()?)
}

/// The profile, which must not have expired.
fn valid_profile() -> Result<Profile> {
    let profile = home()?.load()?;
    profile.check_valid(SystemTime::now())?;
    Ok(profile)
}

fn local_user() -> Option<String> {
    std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|user| !user.is_empty())
}

async fn login(args: LoginArgs) -> Result<()> {
    let home = home()?;
    let previous = home.load().ok();
    let proxy_text = match (&args.proxy, &previous) {
        (Some(proxy), _) => proxy.clone(),
        (None, Some(previous)) => previous.meta.proxy.clone(),
        (None, None) => {
            bail!("which cluster? give the proxy's address: jsh login --proxy HOST:PORT")
        }
    };
    let proxy = ProxyAddr::parse(&proxy_text)?;
    let trust = if args.insecure {
        eprintln!(
            "WARNING: --insecure: the proxy's certificate is NOT checked. Anyone on the network \
             path can impersonate {proxy} and read your password. Use this only with a throwaway \
             test cluster."
        );
        WebTrust::DangerousInsecure
    } else {
        let extra_ca_pem = match &args.ca_cert {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--ca-cert: cannot read {}", path.display()))?,
            ),
            None => None,
        };
        WebTrust::Verified { extra_ca_pem }
    };
    let ping = jumpgate_client::ping(&proxy, &trust).await?;
    let ca_cert = args
        .ca_cert
        .as_ref()
        .map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    let single_sign_on = match args.auth.as_deref() {
        Some("local") => false,
        Some(_) => true,
        None => ping.auth.kind != "local" && args.user.is_none() && !args.password_stdin,
    };
    if single_sign_on {
        let browser = args.browser;
        let profile = jumpgate_client::sso::sso_login(
            &home,
            &jumpgate_client::sso::SsoLoginParams {
                proxy,
                connector: args.auth.clone().unwrap_or_default(),
                ttl: args.ttl,
                trust,
                ca_cert,
            },
            |url| open_browser(url, browser),
        )
        .await?;
        print!("{}", status_text(&profile, SystemTime::now()));
        return Ok(());
    }
    if !ping.auth.local_auth {
        bail!(
            "cluster {} logs people in through single sign-on only: jsh login --auth CONNECTOR",
            ping.cluster_name
        );
    }
    // The web UI, where a security key works: the proxy's public address, else the one
    // jsh was given.
    let web_addr = ping
        .proxy
        .public_addr
        .first()
        .cloned()
        .unwrap_or_else(|| proxy_text.split(',').next().unwrap_or_default().to_string());
    let web_page = mfa::keys_page(&web_addr).replace(mfa::KEYS_PAGE, "/web");
    if ping.auth.second_factor == "webauthn" {
        bail!(
            "cluster {} requires a security key (second_factor: webauthn), which jsh cannot \
             use yet: log in with the web UI at {web_page}",
            ping.cluster_name
        );
    }
    let user = match args.user.clone().or_else(local_user) {
        Some(user) => user,
        None => bail!("who are you? give --user NAME ($USER is not set)"),
    };
    let interactive = terminal::stdin_is_terminal();
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if interactive {
        terminal::prompt_secret(&format!("Password for {user}@{}: ", ping.cluster_name))?
    } else {
        bail!("standard input is not a terminal: give the password with --password-stdin");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let otp = match (&args.otp, ping.needs_otp()) {
        (Some(otp), _) => otp.trim().to_string(),
        (None, false) => String::new(),
        (None, true) if interactive && ping.auth.second_factor == "otp" => {
            terminal::prompt_line("One-time code from your authenticator app: ")?
        }
        (None, true) if interactive => terminal::prompt_line(
            "One-time code from your authenticator app (empty if you have none): ",
        )?,
        // `on`, `optional`: a user may have a key only, or nothing; the server says.
        (None, true) if ping.auth.second_factor != "otp" => String::new(),
        (None, true) => bail!(
            "cluster {} asks for a one-time code and there is no terminal to ask on: give it with --otp CODE",
            ping.cluster_name
        ),
    };
    let profile = match jumpgate_client::login(
        &home,
        &LoginParams {
            proxy,
            user,
            password: Password::new(password),
            otp,
            ttl: args.ttl,
            trust,
            ca_cert,
        },
    )
    .await
    {
        Ok(profile) => profile,
        Err(err) if err.to_string().contains("security key") => {
            bail!("{err}; the web UI is at {web_page}")
        }
        Err(err) => return Err(err.into()),
    };
    print!("{}", status_text(&profile, SystemTime::now()));
    Ok(())
}

/// Shows the identity provider's login page: printed always (the browser may not open,
/// or be on another screen), and opened unless `--browser none`.
fn open_browser(url: &str, mode: crate::cli::BrowserMode) {
    eprintln!("To log in, open this page in your browser:\n\n  {url}\n");
    if mode == crate::cli::BrowserMode::None {
        return;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        eprintln!("(could not start {opener}; open the page yourself)");
    }
}

fn status_text(profile: &Profile, now: SystemTime) -> String {
    let meta = &profile.meta;
    let valid = if profile.is_expired(now) {
        format!(
            "EXPIRED at {}: run `jsh login --proxy {}`",
            humantime::format_rfc3339_seconds(profile.expires()),
            meta.proxy
        )
    } else {
        let left = profile
            .expires()
            .duration_since(now)
            .unwrap_or_default()
            .as_secs();
        format!(
            "{} [valid for {}]",
            humantime::format_rfc3339_seconds(profile.expires()),
            humantime::format_duration(Duration::from_secs(left / 60 * 60))
        )
    };
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    format!(
        "> Profile:      {home}\n  \
         Proxy:        {proxy}\n  \
         Logged in as: {user}\n  \
         Cluster:      {cluster}\n  \
         Roles:        {roles}\n  \
         Logins:       {logins}\n  \
         Valid until:  {valid}\n",
        home = profile.home().dir().display(),
        proxy = meta.proxy,
        user = meta.user,
        cluster = meta.cluster,
        roles = list(&meta.roles),
        logins = list(&meta.principals),
    )
}

fn status() -> Result<()> {
    let profile = home()?.load()?;
    print!("{}", status_text(&profile, SystemTime::now()));
    Ok(())
}

fn logout() -> Result<()> {
    let home = home()?;
    let who = home.load().ok();
    let removed = home.logout()?;
    match who {
        Some(profile) => println!(
            "Logged out {} from {} (removed {} files from {}).",
            profile.meta.user,
            profile.meta.proxy,
            removed.len(),
            home.dir().display()
        ),
        None if removed.is_empty() => println!("Not logged in."),
        None => println!(
            "Removed {} leftover files from {}.",
            removed.len(),
            home.dir().display()
        ),
    }
    Ok(())
}

async fn ls(args: LsArgs) -> Result<()> {
    let profile = valid_profile()?;
    let selectors = LabelFilter::parse_all(&args.labels)?;
    let all = jumpgate_client::list_nodes(&profile).await?;
    let nodes: Vec<_> = nodes::select(&all, &selectors).collect();
    match args.format {
        OutputFormat::Text => print!("{}", nodes::nodes_table(nodes)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&nodes)?),
    }
    Ok(())
}

/// `[LOGIN@]REST`.
fn split_login(target: &str) -> (Option<&str>, &str) {
    match target.rsplit_once('@') {
        Some((login, rest)) if !login.is_empty() => (Some(login), rest),
        _ => (None, target),
    }
}

fn choose_login(
    explicit: Option<&str>,
    from_target: Option<&str>,
    profile: &Profile,
) -> Result<String> {
    explicit
        .or(from_target)
        .map(str::to_string)
        .or_else(local_user)
        .or_else(|| profile.meta.principals.first().cloned())
        .ok_or_else(|| anyhow!("which login? use LOGIN@NODE"))
}

async fn ssh(args: SshArgs) -> Result<u8> {
    let profile = valid_profile()?;
    let (target_login, node) = split_login(&args.target);
    let login = choose_login(args.login.as_deref(), target_login, &profile)?;
    if node.is_empty() {
        bail!("which node? jsh ssh [LOGIN@]NODE (`jsh ls` lists them)");
    }
    let command = (!args.command.is_empty()).then(|| args.command.join(" "));
    if node.contains('=') {
        return ssh_many(&profile, &login, node, command, &args).await;
    }
    let agent_socket = agent_socket(args.forward_agent)?;
    let forwards = args
        .forward
        .iter()
        .map(|spec| ForwardSpec::parse(spec))
        .collect::<Result<Vec<_>, _>>()?;

    let connection =
        jumpgate_client::connect_node(&profile, node, &login, agent_socket.clone()).await?;
    let mut forwardings: Vec<Forwarding> = Vec::new();
    for spec in &forwards {
        let forwarding = connection.forward_local(spec).await?;
        if args.no_command {
            eprintln!(
                "Forwarding {} to {}:{} on {}",
                forwarding.local_addr,
                spec.host,
                spec.port,
                connection.node()
            );
        }
        forwardings.push(forwarding);
    }
    if args.no_command {
        tokio::select! {
            () = connection.closed() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        connection.disconnect().await;
        return Ok(0);
    }

    let interactive = terminal::stdin_is_terminal();
    let want_pty = if args.tty {
        true
    } else if args.no_tty {
        false
    } else {
        command.is_none() && interactive
    };
    let pty = want_pty.then(|| {
        let (cols, rows) = terminal::size().unwrap_or((80, 24));
        PtyRequest {
            term: std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".to_string()),
            cols,
            rows,
        }
    });
    // Raw mode only when our side is a terminal and the node gives a PTY; the guard
    // restores the terminal however the session ends.
    let raw = if want_pty && interactive {
        Some(RawMode::enable()?)
    } else {
        None
    };
    let resizes = if raw.is_some() {
        terminal::resizes().ok()
    } else {
        None
    };
    let request = SessionRequest {
        command,
        pty,
        forward_agent: agent_socket.is_some(),
    };
    let end = connection
        .run(
            &request,
            SessionIo {
                stdin: tokio::io::stdin(),
                stdout: session_stdout()?,
                stderr: tokio::io::stderr(),
                resizes,
                line_prefix: None,
            },
        )
        .await;
    drop(raw);
    drop(forwardings);
    let closed_by_node = connection.disconnect_reason();
    connection.disconnect().await;
    let end = end?;
    match &end {
        jumpgate_client::SessionEnd::Signalled {
            signal, message, ..
        } => eprintln!("jsh: the remote command was killed by signal {signal} {message}"),
        jumpgate_client::SessionEnd::NoStatus => match closed_by_node {
            Some(reason) => eprintln!("jsh: the node closed the connection: {reason}"),
            None => eprintln!(
                "jsh: the connection ended without an exit status (closed by the node or \
                 the proxy)"
            ),
        },
        jumpgate_client::SessionEnd::Exited(_) => {}
    }
    Ok(u8::try_from(end.exit_code()).unwrap_or(EXIT_CONNECTION))
}

fn agent_socket(forward_agent: bool) -> Result<Option<PathBuf>> {
    if !forward_agent {
        return Ok(None);
    }
    match std::env::var_os("SSH_AUTH_SOCK").filter(|sock| !sock.is_empty()) {
        Some(sock) => Ok(Some(PathBuf::from(sock))),
        None => bail!("-A: SSH_AUTH_SOCK is not set, so there is no agent to forward"),
    }
}

/// `jsh ssh LOGIN@KEY=VALUE COMMAND`: the command on every matching node at once.
async fn ssh_many(
    profile: &Profile,
    login: &str,
    selector_text: &str,
    command: Option<String>,
    args: &SshArgs,
) -> Result<u8> {
    let Some(command) = command else {
        bail!("{selector_text} may match several nodes: give a COMMAND to run on each");
    };
    if !args.forward.is_empty() || args.forward_agent || args.tty {
        bail!("-L, -A and -t work with one node only");
    }
    let selectors = LabelFilter::parse_all(
        &selector_text
            .split(',')
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )?;
    let all = jumpgate_client::list_nodes(profile).await?;
    let targets: Vec<_> = nodes::select(&all, &selectors).cloned().collect();
    if targets.is_empty() {
        bail!("no node you may reach has the labels {selector_text} (`jsh ls` lists them)");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for node in targets {
        let profile = profile.clone();
        let login = login.to_string();
        let command = command.clone();
        let stdout = session_stdout()?;
        tasks.spawn(async move {
            let prefix = format!("[{}] ", node.hostname);
            let outcome = async {
                let connection =
                    jumpgate_client::connect_node(&profile, &node.uuid, &login, None).await?;
                let end = connection
                    .run(
                        &SessionRequest {
                            command: Some(command),
                            pty: None,
                            forward_agent: false,
                        },
                        SessionIo {
                            stdin: tokio::io::empty(),
                            stdout,
                            stderr: tokio::io::stderr(),
                            resizes: None,
                            line_prefix: Some(prefix.clone()),
                        },
                    )
                    .await;
                connection.disconnect().await;
                end
            }
            .await;
            match outcome {
                Ok(end) => u8::try_from(end.exit_code()).unwrap_or(EXIT_CONNECTION),
                Err(err) => {
                    let mut stderr = tokio::io::stderr();
                    let _ = stderr
                        .write_all(format!("{prefix}jsh: error: {err}\n").as_bytes())
                        .await;
                    EXIT_CONNECTION
                }
            }
        });
    }
    let mut code = 0;
    while let Some(done) = tasks.join_next().await {
        let node_code = done.unwrap_or(EXIT_CONNECTION);
        if code == 0 {
            code = node_code;
        }
    }
    Ok(code)
}

/// `jsh scp`: exit status 1 if anything failed (as scp), after trying every source.
async fn scp(args: ScpArgs) -> Result<u8> {
    let plan = CopyPlan::parse(&args.paths)?;
    let profile = valid_profile()?;
    let login = choose_login(None, plan.login.as_deref(), &profile)?;
    let connection = jumpgate_client::connect_node(&profile, &plan.node, &login, None).await?;
    let options = CopyOptions {
        recursive: args.recursive,
        progress: !args.quiet && std::io::stderr().is_terminal(),
    };
    let report = scp::copy(&connection, &plan.direction, &options).await;
    connection.disconnect().await;
    let report = report?;
    for err in &report.errors {
        eprintln!("jsh: error: {err}");
    }
    Ok(u8::from(!report.errors.is_empty()))
}

async fn mfa(command: MfaCommand) -> Result<()> {
    let profile = valid_profile()?;
    let proxy = profile
        .meta
        .proxy
        .split(',')
        .next()
        .unwrap_or_default()
        .to_string();
    match command {
        MfaCommand::Ls { format } => {
            let list = mfa::list_devices(&profile).await?;
            match format {
                OutputFormat::Text => {
                    print!("{}", mfa::devices_table(&list));
                    if !list.webauthn_enabled {
                        println!(
                            "Security keys are off in this cluster (second_factor: {}).",
                            list.second_factor
                        );
                    }
                }
                OutputFormat::Json => {
                    let devices: Vec<serde_json::Value> = list
                        .devices
                        .iter()
                        .map(|device| {
                            serde_json::json!({
                                "name": device.name,
                                "id": device.id,
                                "passwordless": device.passwordless,
                                "added_unix": device.added_unix,
                                "last_used_unix": device.last_used_unix,
                            })
                        })
                        .collect();
                    let out = serde_json::json!({
                        "devices": devices,
                        "has_otp": list.has_otp,
                        "second_factor": list.second_factor,
                        "webauthn_enabled": list.webauthn_enabled,
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
            }
        }
        MfaCommand::Add => println!(
            "jsh cannot talk to security keys yet: register one in the web UI, logged in as {}, at\n  {}",
            profile.meta.user,
            mfa::keys_page(&proxy)
        ),
        MfaCommand::Rm { name } => {
            mfa::remove_device(&profile, &name).await?;
            println!("Removed security key {name:?}.");
        }
    }
    Ok(())
}

async fn recordings_ls(format: OutputFormat) -> Result<()> {
    let profile = valid_profile()?;
    let list = recordings::list_recordings(&profile).await?;
    match format {
        OutputFormat::Text => print!("{}", recordings::recordings_table(&list)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&list)?),
    }
    Ok(())
}

async fn play(args: PlayArgs) -> Result<()> {
    let profile = valid_profile()?;
    let bytes = recordings::fetch_recording(&profile, &args.session_id).await?;
    // Checked whatever the format: the file comes from a node.
    let recording = recordings::parse_recording(&args.session_id, &bytes)?;
    let mut stdout = tokio::io::stdout();
    match args.format {
        PlayFormat::Asciicast => stdout.write_all(&bytes).await?,
        PlayFormat::Text => {
            stdout
                .write_all(jumpgate_audit::recording::to_text(&recording).as_bytes())
                .await?;
        }
        PlayFormat::Json => {
            let mut json = jumpgate_audit::recording::to_json(&recording);
            json.push('\n');
            stdout.write_all(json.as_bytes()).await?;
        }
        PlayFormat::Pty => {
            let options = jumpgate_audit::recording::PlayOptions {
                speed: args.speed,
                idle_limit: Some(Duration::from_secs(2)),
            };
            jumpgate_audit::recording::play(&recording, &options, &mut stdout).await?;
        }
    }
    stdout.flush().await?;
    Ok(())
}

fn config() -> Result<()> {
    let profile = home()?.load()?;
    if profile.meta.cluster.is_empty() {
        bail!("the profile does not name its cluster: run `jsh login` again");
    }
    let exe = std::env::current_exe().context("finding the path of this jsh")?;
    print!("{}", openssh_config(&profile, &exe));
    Ok(())
}

/// Standard output for a session's bytes: the file itself rather than std's `Stdout`,
/// whose line buffering scans every byte for a newline and takes a lock per write (a
/// session writes whole chunks and flushes when no more output is queued).
fn session_stdout() -> Result<tokio::fs::File> {
    use std::os::fd::AsFd;
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot use standard output")?;
    Ok(tokio::fs::File::from_std(std::fs::File::from(fd)))
}

/// `jsh proxy ssh [LOGIN@]NODE[:PORT]`: raw bytes between stdio and the node.
async fn proxy_ssh(target: &str) -> Result<u8> {
    let profile = valid_profile()?;
    let (target_login, rest) = split_login(target);
    // A port (OpenSSH's %p) means nothing here: nodes are reached by name.
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => host,
        _ => rest,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let node = strip_cluster_suffix(host, &profile.meta.cluster);
    let login = choose_login(None, target_login, &profile)?;
    // OpenSSH's first flight goes out with the request, not after the answer: one round
    // trip to the node fewer (see `dial_node_pipelined`).
    let dialled = jumpgate_client::dial_node_pipelined(&profile, node, &login).await?;
    let answer = dialled.answer;
    let (from_node, mut to_node) = tokio::io::split(dialled.stream);
    let upstream = tokio::spawn(async move {
        let mut stdin = tokio::io::BufReader::with_capacity(RELAY_BUFFER, tokio::io::stdin());
        let _ = tokio::io::copy_buf(&mut stdin, &mut to_node).await;
        let _ = to_node.shutdown().await;
    });
    let mut stdout = session_stdout()?;
    let mut from_node = tokio::io::BufReader::with_capacity(RELAY_BUFFER, from_node);
    let copied = tokio::io::copy_buf(&mut from_node, &mut stdout).await;
    let _ = stdout.flush().await;
    upstream.abort();
    // A refusal ends the copy with an error: say it as the proxy did.
    if let Some(failure) = answer.take_failure() {
        return Err(failure.into());
    }
    match copied {
        Ok(_) => Ok(0),
        Err(err) if is_disconnect(&err) => Ok(0),
        Err(err) => Err(ClientError::Ssh {
            node: node.to_string(),
            reason: err.to_string(),
        }
        .into()),
    }
}

fn is_disconnect(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_login_and_node() {
        assert_eq!(split_login("root@web-1"), (Some("root"), "web-1"));
        assert_eq!(split_login("web-1"), (None, "web-1"));
        assert_eq!(split_login("@web-1"), (None, "@web-1"));
        assert_eq!(split_login("a@b@web-1"), (Some("a@b"), "web-1"));
    }
}
