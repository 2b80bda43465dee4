//! Command-line interface of `jsh`, the user's tool.

use clap::{Args, Parser, Subcommand, ValueEnum};
use jumpgate_types::config::parse_duration;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "jsh",
    version,
    about = "Log in to a Jumpgate cluster, list its nodes, connect to them with SSH, copy files and play recorded sessions",
    long_about = "Log in to a Jumpgate cluster, list its nodes, connect to them with SSH, copy \
        files and play recorded sessions.\n\n\
        `jsh login --proxy HOST:PORT` makes fresh keys on this machine and gets short-lived \
        certificates for them; they are kept in ~/.jumpgate (or $JUMPGATE_HOME), readable \
        only by you. Every other command uses them: `jsh ls`, `jsh ssh root@web-1`, and \
        OpenSSH through `jsh config`.",
    after_help = "Examples:\n  \
        jsh login --proxy proxy.example.com:443 --user alice\n  \
        jsh ls env=prod\n  \
        jsh ssh root@web-1\n  \
        jsh ssh root@env=prod uptime\n  \
        jsh scp -r ./site root@web-1:/srv/\n  \
        jsh recordings ls && jsh play SESSION_ID\n  \
        jsh config >> ~/.ssh/config && ssh root@web-1.CLUSTER"
)]
pub struct JshCli {
    /// Log what jsh does (to stderr).
    #[arg(short = 'd', long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: JshCommand,
}

#[derive(Debug, Subcommand)]
pub enum JshCommand {
    /// Log in: fresh keys here, certificates for them from the cluster.
    Login(LoginArgs),
    /// Who you are logged in as, where, with which roles and logins, and until when.
    Status,
    /// Remove your keys and certificates from this machine.
    Logout,
    /// List the nodes you may reach, with their labels.
    Ls(LsArgs),
    /// Connect to a node with SSH, or run a command on it (or on every node with a label).
    Ssh(SshArgs),
    /// Copy files to or from a node (over SFTP), like scp: one side is [LOGIN@]NODE:PATH.
    Scp(ScpArgs),
    /// Session recordings.
    #[command(subcommand)]
    Recordings(RecordingsCommand),
    /// Play a recorded session back, or print it as text, JSON or asciicast.
    Play(PlayArgs),
    /// Your security keys (WebAuthn): list, remove, and where to add one.
    #[command(subcommand)]
    Mfa(MfaCommand),
    /// Print an OpenSSH client config block for this cluster (add it to ~/.ssh/config).
    Config,
    /// Plumbing for other programs.
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The proxy's public address; default: the one of your last login. Several proxies
    /// (`a:443,b:443`) are tried in turn by every later command, so a small cluster
    /// needs no load balancer to fail over.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy: Option<String>,
    /// Your Jumpgate user name; default: $USER.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Also trust this PEM CA certificate for the proxy's web certificate (for example
    /// the cluster's own CA on a development cluster), besides the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca_cert: Option<PathBuf>,
    /// Do not check the proxy's web certificate at all. Anyone on the network path can
    /// then read your password: for throwaway test clusters only.
    #[arg(long)]
    pub insecure: bool,
    /// Read the password from standard input (one line) instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// The current one-time code of your authenticator app; prompted for if the
    /// cluster asks for one and this is not given.
    #[arg(long, value_name = "CODE")]
    pub otp: Option<String>,
    /// How long the certificates should be valid (e.g. 8h); default: the cluster's
    /// (12h). Your roles may shorten it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,
    /// Log in through this single sign-on connector (its name, as the login page shows
    /// it), or `local` for a password; default: the cluster's own default.
    #[arg(long, value_name = "NAME")]
    pub auth: Option<String>,
    /// For single sign-on: `none` only prints the login URL instead of opening a browser
    /// (to open it on another machine's browser, a login on that machine must reach this
    /// one's 127.0.0.1).
    #[arg(long, value_enum, default_value_t = BrowserMode::Default)]
    pub browser: BrowserMode,
}

/// Whether `jsh login --auth` opens a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum BrowserMode {
    /// Open the system's browser (xdg-open, open) and print the URL too.
    #[default]
    Default,
    /// Only print the URL.
    None,
}

/// How lists are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Only nodes with all these labels.
    #[arg(value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// Ask the node for a terminal (PTY), even to run a command.
    #[arg(short = 't', conflicts_with = "no_tty")]
    pub tty: bool,
    /// Do not ask for a terminal, even for a shell.
    #[arg(short = 'T')]
    pub no_tty: bool,
    /// Forward a local port to HOST:PORT as seen from the node. May be repeated.
    #[arg(short = 'L', value_name = "[ADDR:]PORT:HOST:PORT")]
    pub forward: Vec<String>,
    /// Forward your SSH agent ($SSH_AUTH_SOCK) to the node.
    #[arg(short = 'A')]
    pub forward_agent: bool,
    /// Run no command or shell: only forward ports (with -L).
    #[arg(short = 'N', requires = "forward")]
    pub no_command: bool,
    /// The OS login on the node (as LOGIN@NODE); default: your local user name.
    #[arg(short = 'l', value_name = "LOGIN")]
    pub login: Option<String>,
    /// Ignored: nodes are reached through the proxy, not by port (accepted for
    /// OpenSSH habits).
    #[arg(short = 'p', value_name = "PORT")]
    pub port: Option<u16>,
    /// [LOGIN@]NODE: the node's host name or UUID; or [LOGIN@]KEY=VALUE[,KEY=VALUE] to
    /// run COMMAND on every node with those labels (output lines prefixed by node).
    #[arg(value_name = "[LOGIN@]NODE")]
    pub target: String,
    /// The command to run; without one, an interactive shell.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Connect standard input and output to a node's SSH service through the proxy:
    /// OpenSSH's ProxyCommand (`jsh config` sets it up). A trailing `.<cluster>` on
    /// NODE is removed; the port is ignored.
    Ssh {
        /// [LOGIN@]NODE[:PORT]
        #[arg(value_name = "[LOGIN@]NODE[:PORT]")]
        target: String,
    },
}

#[derive(Debug, Args)]
#[command(
    override_usage = "jsh scp [-r] [-q] SOURCE... TARGET",
    after_help = "Examples:\n  \
        jsh scp app.tar.gz root@web-1:/tmp/\n  \
        jsh scp -r root@web-1:/var/log/app ./logs\n  \
        jsh scp notes.txt web-1:          (into the login's home directory)"
)]
pub struct ScpArgs {
    /// Copy directories with everything in them.
    #[arg(short = 'r')]
    pub recursive: bool,
    /// No progress bar.
    #[arg(short = 'q')]
    pub quiet: bool,
    /// SOURCE... TARGET. Exactly one side is on a node: [LOGIN@]NODE:PATH, with PATH
    /// relative to the login's home directory unless it starts with `/` (`NODE:` is the
    /// home directory). As scp: an argument is remote if a `:` comes before any `/`
    /// (write `./a:b` for a local file with a colon).
    #[arg(value_name = "PATH", num_args = 2.., required = true)]
    pub paths: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum MfaCommand {
    /// List your security keys (and whether you have an authenticator app).
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Print the web page to register a security key or passkey on (registering needs
    /// the browser: jsh has no FIDO library).
    Add,
    /// Remove a security key by name; refused for the last second factor the cluster
    /// requires.
    Rm {
        /// The key's name, as `jsh mfa ls` shows it.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// List the recorded sessions (needs a role with the `session` rule, e.g. auditor).
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

/// How `jsh play` shows a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum PlayFormat {
    /// Replay the output on this terminal at the recorded pace (pauses cut to 2 s).
    #[default]
    Pty,
    /// The output as plain text: escape sequences removed, for reading and grep.
    Text,
    /// The events as a JSON array of {time, type, data}.
    Json,
    /// The asciicast v2 file as stored, for `asciinema play` or `asciinema cat`.
    Asciicast,
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// The session's ID (`jsh recordings ls` lists them).
    #[arg(value_name = "SESSION_ID")]
    pub session_id: String,
    /// Playback speed for --format pty: 2 is twice as fast, 0.5 half (0.001 to 1000).
    #[arg(long, value_name = "N", default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlayFormat::Pty)]
    pub format: PlayFormat,
}

fn parse_speed(text: &str) -> Result<f64, String> {
    use jumpgate_audit::recording::{MAX_SPEED, MIN_SPEED};
    let speed: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number (examples: 2, 0.5)"))?;
    if (MIN_SPEED..=MAX_SPEED).contains(&speed) {
        Ok(speed)
    } else {
        Err(format!(
            "use a number from {MIN_SPEED} to {MAX_SPEED} (1 is real time)"
        ))
    }
}
