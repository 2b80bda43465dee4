//! The admin identity `jctl` uses on the auth host, in `DATA_DIR/admin/`: written by the
//! auth service at every start and after every renewal, read by `jctl`.
//!
//! Layout: `cert.pem` (the X.509 identity), `key.pem` (its private key, 0600), `ca.pem`
//! (the cluster's TLS CA certificates to trust) and `auth_addr` (where this host's auth
//! API listens, as `host:port`).

use crate::files::{create_private_dir, write_private};
use crate::{ApiError, PemIdentity, TlsCredentials};
use std::path::{Path, PathBuf};

/// Why the admin identity cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AdminIdentityError {
    #[error(
        "no admin identity in {}: jctl runs on the auth host and needs the auth service to \
         have started there (with this data directory), and read access to it (run as the \
         same user, e.g. root)",
        dir.display()
    )]
    Missing { dir: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The error names the directory.
    #[error(transparent)]
    Directory(std::io::Error),
}

/// The admin identity's directory inside a data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("admin")
}

/// The admin identity and where to reach the auth API with it.
#[derive(Debug, Clone)]
pub struct AdminIdentity {
    pub identity: PemIdentity,
    pub auth_addr: Option<String>,
}

impl AdminIdentity {
    pub fn credentials(&self) -> Result<TlsCredentials, ApiError> {
        self.identity.credentials()
    }
}

/// Writes the identity into `dir` (created 0700), each file 0600 and replaced atomically
/// (a `jctl` reading concurrently sees the old or the new file).
pub fn write(dir: &Path, admin: &AdminIdentity) -> Result<(), AdminIdentityError> {
    create_private_dir(dir).map_err(AdminIdentityError::Directory)?;
    let identity = &admin.identity;
    for (name, contents) in [
        ("key.pem", &identity.key_pem),
        ("cert.pem", &identity.cert_pem),
        ("ca.pem", &identity.ca_pem),
        ("cluster", &identity.cluster),
    ] {
        write_file(&dir.join(name), contents.as_bytes())?;
    }
    if let Some(addr) = &admin.auth_addr {
        write_file(&dir.join("auth_addr"), format!("{addr}\n").as_bytes())?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), AdminIdentityError> {
    write_private(path, contents).map_err(|source| AdminIdentityError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the identity from `dir`, saying what to do when it is missing.
pub fn read(dir: &Path) -> Result<AdminIdentity, AdminIdentityError> {
    if !dir.join("cert.pem").exists() {
        return Err(AdminIdentityError::Missing {
            dir: dir.to_path_buf(),
        });
    }
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| AdminIdentityError::Read { path, source })
    };
    let optional = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
    };
    Ok(AdminIdentity {
        identity: PemIdentity {
            cluster: optional("cluster").unwrap_or_default(),
            cert_pem: read("cert.pem")?,
            key_pem: read("key.pem")?,
            ca_pem: read("ca.pem")?,
        },
        auth_addr: optional("auth_addr"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_reads_back_as_written_and_a_missing_one_says_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let admin_dir = dir(root.path());
        let err = read(&admin_dir).unwrap_err();
        assert!(
            err.to_string().contains("jctl runs on the auth host"),
            "{err}"
        );
        let admin = AdminIdentity {
            identity: PemIdentity {
                cluster: "example".to_string(),
                cert_pem: "CERT".to_string(),
                key_pem: "KEY".to_string(),
                ca_pem: "CA".to_string(),
            },
            auth_addr: Some("127.0.0.1:3025".to_string()),
        };
        write(&admin_dir, &admin).unwrap();
        let back = read(&admin_dir).unwrap();
        assert_eq!(back.identity, admin.identity);
        assert_eq!(back.auth_addr, admin.auth_addr);
    }
}
