//! The three programs Jumpgate ships, their CLI definitions (the very clap types the
//! binaries parse with) and what their man pages say beyond the options.

use clap::CommandFactory;

/// One shipped program.
#[derive(Debug)]
pub struct Program {
    /// The binary's name, in /usr/bin.
    pub name: &'static str,
    /// Its clap definition.
    pub command: fn() -> clap::Command,
    /// Man page FILES section: path, what it is.
    pub files: &'static [(&'static str, &'static str)],
    /// Man page ENVIRONMENT section: variable, what it does.
    pub environment: &'static [(&'static str, &'static str)],
}

/// `jumpgate`, `jctl` and `jsh`.
pub fn all() -> [Program; 3] {
    [
        Program {
            name: "jumpgate",
            command: jumpgate::cli::Cli::command,
            files: &[
                (
                    "/etc/jumpgate.yaml",
                    "The config (`jumpgate configure` prints a commented sample; \
                     `jumpgate config check -c FILE` validates one).",
                ),
                (
                    "/var/lib/jumpgate",
                    "The default data directory (jumpgate.data_dir): this host's keys and \
                     certificates, and on an auth server the embedded cluster state, \
                     audit log and recordings. Private (0700).",
                ),
                (
                    "/lib/systemd/system/jumpgate.service",
                    "The systemd unit; /usr/share/jumpgate/hardening.conf is a sandbox \
                     for hosts without ssh_service.",
                ),
            ],
            environment: &[],
        },
        Program {
            name: "jctl",
            command: jumpgate::jctl_cli::JctlCli::command,
            files: &[(
                "/var/lib/jumpgate/admin",
                "The admin identity the auth service writes at every start, and the \
                 address of its API: what jctl uses on the auth host.",
            )],
            environment: &[(
                "JUMPGATE_HOME",
                "Where jsh keeps its profile (default ~/.jumpgate); jctl uses a logged-in \
                 user's profile when no admin identity is given.",
            )],
        },
        Program {
            name: "jsh",
            command: jsh::cli::JshCli::command,
            files: &[(
                "~/.jumpgate",
                "Your profile: the proxy's address, your private keys and short-lived \
                 certificates, the cluster's CA. Readable only by you.",
            )],
            environment: &[
                (
                    "JUMPGATE_HOME",
                    "The profile directory instead of ~/.jumpgate.",
                ),
                ("SSH_AUTH_SOCK", "The SSH agent forwarded by `jsh ssh -A`."),
            ],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cli_definition_is_consistent() {
        // clap's own checks (conflicting flags, duplicate names), which otherwise run
        // only when a user types a command.
        for program in all() {
            (program.command)().debug_assert();
            assert_eq!((program.command)().get_name(), program.name);
        }
    }
}
