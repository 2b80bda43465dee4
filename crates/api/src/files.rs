//! Private files: keys, certificates and tokens are written readable by their owner only
//! (DESIGN.md "Invariants": key files are written 0600), replaced atomically so a reader
//! sees the old or the new file, never half of one.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` with mode 0600 through a temporary file renamed over it.
/// The temporary file is this process's own (`.NAME.tmpPID` beside `path`), so two
/// processes writing the same file (two `jsh login`s) never write into one temporary file,
/// and it is removed when the write fails. Callers name `path` in their error.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let written = (|| {
        // Left over by a crashed earlier process with the same id.
        let _ = std::fs::remove_file(&temp);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Creates `dir` (and its parents) with mode 0700, or warns when an existing one is open
/// to other users. The error names the directory.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let named = |err: std::io::Error, what: &str| {
        std::io::Error::new(
            err.kind(),
            format!("cannot {what} {}: {err}", dir.display()),
        )
    };
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir)
                .map_err(|err| named(err, "inspect"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "directory is accessible to other users; `chmod 700` it"
                );
            }
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|err| named(err, "create"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|err| named(err, "make private (0700)"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn private_files_and_directories_are_for_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("key.pem");
        write_private(&file, b"one").unwrap();
        write_private(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        assert_eq!(mode(&file), 0o600);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left, ["key.pem"], "a temporary file was left behind");
        let err = write_private(&root.path().join("missing/key.pem"), b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }
}
