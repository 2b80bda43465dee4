//! The host's own identity, kept in `DATA_DIR/host_identity/` (0700; files 0600): made
//! at the first join, reused on every later start, so a token is needed only once.
//! Private keys are made here and never leave the host.

use crate::{AgentError, IdentityError};
use jumpgate_api::proto;
use jumpgate_pki::{SshKeyPair, generate_ssh_key, generate_tls_key};
use std::path::{Path, PathBuf};

/// Everything the host received when it joined, plus its private keys.
#[derive(Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub cluster: String,
    pub host_uuid: String,
    /// X.509 identity (node), PEM, and its key.
    pub tls_cert_pem: String,
    pub tls_key_pem: String,
    /// The cluster's TLS CAs to trust (PEM, concatenated).
    pub tls_ca_pem: String,
    /// OpenSSH host key and certificate.
    pub ssh_host_key: String,
    pub ssh_host_cert: String,
    /// `TrustedUserCAKeys` lines.
    pub user_ca_keys: String,
    /// `@cert-authority` lines.
    pub host_ca_known_hosts: String,
}

impl std::fmt::Debug for HostIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIdentity")
            .field("cluster", &self.cluster)
            .field("host_uuid", &self.host_uuid)
            .field("keys", &"[redacted]")
            .finish()
    }
}

/// Fresh keys for a join or a renewal, made here: only the public halves are sent.
pub(crate) struct HostKeys {
    pub(crate) ssh: SshKeyPair,
    tls_key_pem: String,
    pub(crate) tls_public_pem: String,
}

impl HostKeys {
    pub(crate) fn generate(host_name: &str) -> Result<HostKeys, AgentError> {
        let ssh = generate_ssh_key(host_name).map_err(IdentityError::Keys)?;
        let (tls_key_pem, tls_public_pem) = generate_tls_key().map_err(IdentityError::Keys)?;
        Ok(HostKeys {
            ssh,
            tls_key_pem,
            tls_public_pem,
        })
    }

    /// The identity these keys form with the certificates the cluster issued for them.
    pub(crate) fn into_identity(
        self,
        cluster: String,
        host_uuid: String,
        issued: proto::JoinResponse,
    ) -> HostIdentity {
        HostIdentity {
            cluster,
            host_uuid,
            tls_cert_pem: issued.tls_certificate_pem,
            tls_key_pem: self.tls_key_pem,
            tls_ca_pem: issued.tls_ca_pems.concat(),
            ssh_host_key: self.ssh.private_openssh,
            ssh_host_cert: issued.ssh_host_certificate,
            user_ca_keys: issued.user_ca_keys,
            host_ca_known_hosts: issued.host_ca_known_hosts,
        }
    }
}

const FILES: [&str; 9] = [
    "cluster",
    "host_uuid",
    "tls.crt",
    "tls.key",
    "tls_ca.pem",
    "ssh_host_key",
    "ssh_host_key-cert.pub",
    "user_ca.pub",
    "known_hosts",
];

/// The directory inside a data directory.
pub fn identity_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("host_identity")
}

fn io_error(path: &Path, source: std::io::Error) -> AgentError {
    AgentError::Identity(IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl HostIdentity {
    /// Reads a stored identity; `Ok(None)` when the host has not joined yet.
    pub fn load(data_dir: &Path) -> Result<Option<HostIdentity>, AgentError> {
        let dir = identity_dir(data_dir);
        if !dir.join("tls.crt").exists() {
            return Ok(None);
        }
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| IdentityError::Incomplete {
                path,
                dir: dir.clone(),
                source,
            })
        };
        Ok(Some(HostIdentity {
            cluster: read("cluster")?.trim().to_string(),
            host_uuid: read("host_uuid")?.trim().to_string(),
            tls_cert_pem: read("tls.crt")?,
            tls_key_pem: read("tls.key")?,
            tls_ca_pem: read("tls_ca.pem")?,
            ssh_host_key: read("ssh_host_key")?,
            ssh_host_cert: read("ssh_host_key-cert.pub")?,
            user_ca_keys: read("user_ca.pub")?,
            host_ca_known_hosts: read("known_hosts")?,
        }))
    }

    /// Writes the identity: every file 0600 in a 0700 directory, each replaced atomically,
    /// the certificate last so that a crash half-way leaves no identity that looks whole.
    pub fn save(&self, data_dir: &Path) -> Result<(), AgentError> {
        let dir = identity_dir(data_dir);
        std::fs::create_dir_all(&dir).map_err(|err| io_error(&dir, err))?;
        set_mode(&dir, 0o700)?;
        let contents = [
            format!("{}\n", self.cluster),
            format!("{}\n", self.host_uuid),
            self.tls_cert_pem.clone(),
            self.tls_key_pem.clone(),
            self.tls_ca_pem.clone(),
            self.ssh_host_key.clone(),
            self.ssh_host_cert.clone(),
            self.user_ca_keys.clone(),
            self.host_ca_known_hosts.clone(),
        ];
        let mut pairs: Vec<(&str, &String)> = FILES.iter().copied().zip(contents.iter()).collect();
        // tls.crt (what `load` looks for) goes last.
        pairs.sort_by_key(|(name, _)| *name == "tls.crt");
        for (name, text) in pairs {
            write_private(&dir.join(name), text)?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|err| io_error(path, err))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), AgentError> {
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<(), AgentError> {
    jumpgate_api::files::write_private(path, text.as_bytes()).map_err(|err| io_error(path, err))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn sample() -> HostIdentity {
        HostIdentity {
            cluster: "prod".to_string(),
            host_uuid: "u-1".to_string(),
            tls_cert_pem: "cert".to_string(),
            tls_key_pem: "key".to_string(),
            tls_ca_pem: "ca".to_string(),
            ssh_host_key: "hostkey".to_string(),
            ssh_host_cert: "hostcert".to_string(),
            user_ca_keys: "userca".to_string(),
            host_ca_known_hosts: "kh".to_string(),
        }
    }

    #[test]
    fn saved_identity_loads_back_with_private_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(HostIdentity::load(dir.path()).unwrap().is_none());
        sample().save(dir.path()).unwrap();
        assert_eq!(HostIdentity::load(dir.path()).unwrap(), Some(sample()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            let id_dir = identity_dir(dir.path());
            assert_eq!(mode(&id_dir), 0o700);
            assert_eq!(mode(&id_dir.join("tls.key")), 0o600);
            assert_eq!(mode(&id_dir.join("ssh_host_key")), 0o600);
        }
        // A damaged identity is reported with what to do, not half-used.
        std::fs::remove_file(identity_dir(dir.path()).join("tls.key")).unwrap();
        let err = HostIdentity::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("join again"), "{err}");
    }

    #[test]
    fn a_damaged_identity_is_matched_and_keeps_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        sample().save(dir.path()).unwrap();
        let missing = identity_dir(dir.path()).join("tls.key");
        std::fs::remove_file(&missing).unwrap();
        let err = HostIdentity::load(dir.path()).unwrap_err();
        let AgentError::Identity(IdentityError::Incomplete { path, source, .. }) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(path, &missing);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        // The chain: the agent's error, the identity's, the I/O error.
        let identity = std::error::Error::source(&err).unwrap();
        let io = identity.source().unwrap();
        assert!(io.downcast_ref::<std::io::Error>().is_some(), "{io:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "host identity: {}: {source}; the stored identity is incomplete: remove {} and \
                 join again with a new token",
                missing.display(),
                identity_dir(dir.path()).display()
            )
        );
    }
}
