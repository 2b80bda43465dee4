//! The host's own data directory: created private, locked while a daemon uses it, and
//! holding the instance's identity (DESIGN.md "instance state").

use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "jumpgate.lock";
const HOST_UUID_FILE: &str = "host_uuid";

/// An exclusive hold on a data directory, released when dropped (or when the process
/// dies: the lock is the kernel's, not a stale file).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    dir: PathBuf,
}

impl DataDirLock {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates `dir` (0700) if needed and takes its lock; fails with a clear message when
/// another jumpgate process holds it.
pub fn lock(dir: &Path) -> Result<DataDirLock> {
    create_private_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock {
            _file: file,
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::WouldBlock) => bail!(
            "data directory {} is in use by another jumpgate process (lock {} is held); \
             stop that process first, or use another --data-dir",
            dir.display(),
            path.display()
        ),
        Err(TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Creates a directory readable only by its owner (it holds private keys). An existing
/// directory is left as it is (it may be shared on purpose, like `/tmp`), with a warning
/// when others can read it.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    Ok(jumpgate_api::files::create_private_dir(dir)?)
}

/// This host's stable identity: made once, kept in the data directory.
pub fn host_uuid(dir: &Path) -> Result<String> {
    let path = dir.join(HOST_UUID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            uuid::Uuid::parse_str(text).with_context(|| {
                format!(
                    "{} does not hold a UUID ({text:?}); delete it to get a new host identity",
                    path.display()
                )
            })?;
            Ok(text.to_string())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another jumpgate process"), "{err}");
        drop(first);
        lock(dir.path()).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn new_dirs_are_private_and_existing_ones_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        create_private_dir(&shared).unwrap();
        let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o1777, "an existing directory must keep its mode");
        let fresh = dir.path().join("fresh/data");
        create_private_dir(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn host_uuid_is_stable_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let id = host_uuid(dir.path()).unwrap();
        assert_eq!(host_uuid(dir.path()).unwrap(), id);
        std::fs::write(dir.path().join(HOST_UUID_FILE), "garbage").unwrap();
        let err = format!("{:#}", host_uuid(dir.path()).unwrap_err());
        assert!(err.contains("does not hold a UUID"), "{err}");
    }
}
