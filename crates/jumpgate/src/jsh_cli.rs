//! Command-line interface of `jsh`, the user's tool.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "jsh",
    version,
    about = "Log in to a Jumpgate cluster, list its nodes and connect to them with SSH",
    long_about = "Log in to a Jumpgate cluster, list its nodes and connect to them with SSH.\n\n\
        `jsh login --proxy HOST:PORT` makes fresh keys on this machine and gets short-lived \
        certificates for them; they are kept in ~/.jumpgate (or $JUMPGATE_HOME), readable \
        only by you. Every other command uses them: `jsh ls`, `jsh ssh root@web-1`, and \
        OpenSSH through `jsh config`.",
    after_help = "Examples:\n  \
        jsh login --proxy proxy.example.com:443 --user alice\n  \
        jsh ls env=prod\n  \
        jsh ssh root@web-1\n  \
        jsh ssh root@env=prod uptime\n  \
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
    /// The proxy's public address; default: the one of your last login.
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
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err} (examples: 30m, 8h, 1h30m)"))
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
