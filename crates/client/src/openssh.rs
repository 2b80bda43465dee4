//! OpenSSH integration (DESIGN.md "Flows": connect): `jsh config` prints a `Host` block
//! that makes `ssh login@NODE.CLUSTER` go through `jsh proxy ssh` with the profile's key,
//! certificate and host CA.
//!
//! OpenSSH checks a host certificate's principals against the name given on its command
//! line (`%h`), so nodes carry `<hostname>.<cluster>` among their host principals, and
//! `jsh proxy ssh` strips the `.<cluster>` suffix before asking the proxy for the node.

use crate::profile::{KNOWN_HOSTS_FILE, Profile, SSH_CERT_FILE, SSH_KEY_FILE};
use std::path::Path;

/// The `Host *.<cluster>` block for `~/.ssh/config`.
pub fn openssh_config(profile: &Profile, jsh_exe: &Path) -> String {
    let cluster = &profile.meta.cluster;
    let home = profile.home();
    let file = |name: &str| config_quote(&home.file(name).to_string_lossy());
    let proxy_command = format!(
        "env JUMPGATE_HOME={} {} proxy ssh %r@%h:%p",
        shell_quote(&home.dir().to_string_lossy()),
        shell_quote(&jsh_exe.to_string_lossy()),
    );
    format!(
        "# Jumpgate cluster {cluster:?} through the proxy {proxy} (from `jsh config`).\n\
         # Add this to ~/.ssh/config, then connect with the node's host name plus\n\
         # \".{cluster}\", for example:  ssh root@web-1.{cluster}\n\
         Host *.{cluster}\n\
         \x20   UserKnownHostsFile {known_hosts}\n\
         \x20   StrictHostKeyChecking yes\n\
         \x20   IdentityFile {key}\n\
         \x20   CertificateFile {cert}\n\
         \x20   IdentitiesOnly yes\n\
         \x20   CanonicalizeHostname no\n\
         \x20   ProxyCommand {proxy_command}\n",
        proxy = profile.meta.proxy,
        known_hosts = file(KNOWN_HOSTS_FILE),
        key = file(SSH_KEY_FILE),
        cert = file(SSH_CERT_FILE),
    )
}

/// The node name OpenSSH passed to `jsh proxy ssh` (`%h`), without `.<cluster>`.
pub fn strip_cluster_suffix<'a>(host: &'a str, cluster: &str) -> &'a str {
    if cluster.is_empty() {
        return host;
    }
    host.strip_suffix(cluster)
        .and_then(|rest| rest.strip_suffix('.'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(host)
}

/// A value for ssh_config: double quotes when it has spaces.
fn config_quote(value: &str) -> String {
    if value.chars().any(char::is_whitespace) {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

/// A word for the shell OpenSSH runs the ProxyCommand with. `%` is doubled because
/// ssh_config expands `%` tokens in ProxyCommand.
fn shell_quote(value: &str) -> String {
    let value = value.replace('%', "%%");
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        value
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_suffix_is_stripped() {
        assert_eq!(strip_cluster_suffix("web-1.dev", "dev"), "web-1");
        assert_eq!(strip_cluster_suffix("web-1", "dev"), "web-1");
        assert_eq!(strip_cluster_suffix("web-1dev", "dev"), "web-1dev");
        assert_eq!(strip_cluster_suffix(".dev", "dev"), ".dev");
        assert_eq!(
            strip_cluster_suffix("a.b.example.com", "example.com"),
            "a.b"
        );
    }

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/usr/bin/jsh"), "/usr/bin/jsh");
        assert_eq!(shell_quote("/my dir/it's"), "'/my dir/it'\\''s'");
        assert_eq!(shell_quote("/a%b"), "/a%%b");
        assert_eq!(config_quote("/a b"), "\"/a b\"");
    }
}
