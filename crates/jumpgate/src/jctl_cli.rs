//! Command-line interface of `jctl`, the admin tool.

use clap::{Args, Parser, Subcommand, ValueEnum};
use jumpgate_types::config::parse_duration;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "jctl",
    version,
    about = "Administer a Jumpgate cluster: users, roles, join tokens, certificates, audit log",
    long_about = "Administer a Jumpgate cluster: users, roles, join tokens, certificates, \
        audit log.\n\nOn the auth host, jctl uses the admin identity the auth service keeps \
        in its data directory: give the daemon's config (-c /etc/jumpgate.yaml) or its \
        --data-dir. It talks to the running auth service over mutual TLS."
)]
pub struct JctlCli {
    /// The daemon's config file (to find its data directory and auth address).
    #[arg(
        short = 'c',
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "data_dir"
    )]
    pub config: Option<PathBuf>,
    /// The daemon's data directory (holds the admin identity).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The auth service's address (host:port); default: the one the daemon recorded.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub auth_server: Option<String>,
    #[command(subcommand)]
    pub command: JctlCommand,
}

/// How data is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum JctlCommand {
    /// Cluster name, CA fingerprints and the ca_pin joining hosts need.
    Status(FormatArg),
    /// Local users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Join tokens for nodes and proxies.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Joined nodes (from their heartbeats).
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// SSH sessions in progress.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Show resources: `jctl get roles`, `jctl get role/access`, `jctl get users`.
    Get {
        /// KIND or KIND/NAME (user, role, token, node, proxy, auth_server, cert_authority,
        /// lock, oidc, saml, github).
        target: String,
        /// Show SSO connectors' client secrets (hidden otherwise).
        #[arg(long)]
        with_secrets: bool,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Create resources from a YAML or JSON file (`-` for stdin); several documents may
    /// be separated by `---`.
    Create {
        /// The file.
        file: PathBuf,
        /// Overwrite resources that exist.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Remove a resource: `jctl rm role/dev`.
    Rm {
        /// KIND/NAME.
        target: String,
    },
    /// Lock a user, role, login or node out of the cluster at once: proxies, nodes and
    /// auth refuse its certificates and end its live sessions, until the lock expires or
    /// `jctl rm lock/NAME` removes it. `jctl get locks` lists them.
    Lock(LockArgs),
    /// Certificate authorities and certificates.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// What `jctl lock` locks, why, and for how long.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["user", "role", "login", "node"])))]
pub struct LockArgs {
    /// A user, by name.
    #[arg(long)]
    pub user: Option<String>,
    /// Everyone holding this role.
    #[arg(long)]
    pub role: Option<String>,
    /// An OS login, on every node.
    #[arg(long)]
    pub login: Option<String>,
    /// A node (or proxy), by UUID (`jctl nodes ls`): it is cut off and nobody reaches it.
    #[arg(long, value_name = "UUID")]
    pub node: Option<String>,
    /// Shown to whoever is refused.
    #[arg(long, default_value = "")]
    pub message: String,
    /// How long the lock lasts (e.g. 30m, 12h); default: until removed.
    #[arg(long, value_parser = parse_duration, conflicts_with = "expires")]
    pub ttl: Option<std::time::Duration>,
    /// When the lock ends, in RFC 3339 (2030-01-02T15:04:05Z).
    #[arg(long, value_name = "TIME")]
    pub expires: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List the nodes whose heartbeat is current: name, UUID, labels, and which proxies
    /// hold their reverse tunnels.
    Ls(FormatArg),
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List the SSH sessions in progress on every node, newest first: ID, user, login and
    /// node, shell or command, the client's address, since when. A node names its live
    /// sessions in its heartbeats; a node that died takes its sessions off within 20 s.
    Ls(FormatArg),
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user. Without --password-stdin prints a one-time signup token and its invite
    /// link (https://PROXY/web/invite#TOKEN: the web UI's signup page, where the user sets
    /// a password and enrols TOTP); with it, reads the password from stdin and prints the
    /// otpauth:// URI to enrol TOTP.
    Add {
        name: String,
        /// Roles, comma-separated (e.g. access,editor).
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// OS logins, comma-separated: the `{{internal.logins}}` trait.
        #[arg(long, value_delimiter = ',')]
        logins: Vec<String>,
        /// Read the password from stdin (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    Ls(FormatArg),
    /// Remove a user.
    Rm { name: String },
    /// Forget a user's password and TOTP; prints a new signup token and invite link.
    Reset { name: String },
    /// Lift a lock after failed logins.
    Unlock { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a join token. One host may join with it, once, unless --reusable.
    Add {
        /// What hosts with the token may join as: node, proxy, or node,proxy.
        #[arg(long = "type", value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// How long the token is valid (e.g. 30m, 2h).
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        ttl: std::time::Duration,
        /// Let any number of hosts join with the token until it expires (autoscaling
        /// groups); by default the first join consumes it.
        #[arg(long)]
        reusable: bool,
        #[command(flatten)]
        format: FormatArg,
    },
    /// List join tokens (their ids; the tokens themselves are stored hashed).
    Ls(FormatArg),
    /// Remove a join token, by the token or its id.
    Rm { token: String },
}

/// Which CA to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaType {
    User,
    Host,
    Tls,
}

/// Which CAs to rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RotateType {
    User,
    Host,
    Tls,
    All,
}

/// Certificate format for `auth sign --user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum CertFormat {
    /// PATH (private key), PATH.pub, PATH-cert.pub for ssh -i PATH.
    #[default]
    Openssh,
    /// PATH.key, PATH.crt and PATH.cas (X.509, for mutual TLS).
    Tls,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Rotate CAs: new certificates are signed by a fresh key at once, while the old key
    /// stays trusted for the grace period. Re-run `jctl auth export` for OpenSSH servers
    /// and known_hosts files within it.
    Rotate {
        #[arg(long = "type", value_enum)]
        ca_type: RotateType,
        /// How long the old keys stay trusted (at most 720h); 0 retires them at once,
        /// for a key that may be compromised.
        #[arg(long, value_parser = parse_duration, default_value = "30h")]
        grace_period: std::time::Duration,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Print a CA: user → sshd TrustedUserCAKeys lines, host → known_hosts
    /// `@cert-authority` lines, tls → PEM.
    Export {
        #[arg(long = "type", value_enum)]
        ca_type: CaType,
    },
    /// Sign a certificate for a new key made here: for a user (automation) or a host
    /// (an OpenSSH server without the Jumpgate agent).
    #[command(group = clap::ArgGroup::new("subject").required(true).args(["user", "host"]))]
    Sign {
        /// The user to sign for.
        #[arg(long)]
        user: Option<String>,
        /// The host name to sign for.
        #[arg(long)]
        host: Option<String>,
        /// Where to write the key and certificate (see --format).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// Certificate lifetime (capped by the user's roles).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
        /// User certificates: openssh or tls.
        #[arg(long, value_enum, default_value_t = CertFormat::Openssh)]
        format: CertFormat,
        /// Host certificates: more principals (DNS names, addresses), comma-separated.
        #[arg(long, value_delimiter = ',')]
        principals: Vec<String>,
        /// Overwrite existing files at PATH.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Search events, oldest first.
    Search {
        /// From (RFC 3339, e.g. 2026-11-22T10:00:00Z, or a duration ago, e.g. 1h).
        #[arg(long, default_value = "24h")]
        from: String,
        /// To (RFC 3339 or a duration ago); default now.
        #[arg(long)]
        to: Option<String>,
        /// Event type (user.login, cert.create, auth, ...); repeatable.
        #[arg(long = "type")]
        types: Vec<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        session: Option<String>,
        /// How many events at most (fetched 1000 at a time); a note on stderr says when
        /// more match.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        #[command(flatten)]
        format: FormatArg,
    },
}
