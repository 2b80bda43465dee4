//! `jumpgate backup create|restore`: online snapshots of the embedded SQLite state.
//! (For etcd, use etcd's own `etcdctl snapshot save`.)

use crate::cli::{DEFAULT_DEV_DATA_DIR, StateLocation};
use crate::{config_file, datadir, storage};
use anyhow::{Context, Result, bail};
use jumpgate_types::Config;
use std::path::{Path, PathBuf};

/// The SQLite file and data directory the command works on.
fn locate(location: &StateLocation) -> Result<(PathBuf, PathBuf)> {
    let mut config = match &location.config {
        Some(path) => config_file::load(path)?,
        None => Config::dev(PathBuf::from(DEFAULT_DEV_DATA_DIR)),
    };
    if let Some(dir) = &location.data_dir {
        config.jumpgate.data_dir = dir.clone();
    }
    let Some(db) = storage::sqlite_path(&config) else {
        bail!(
            "jumpgate.storage.type is not sqlite: `jumpgate backup` snapshots the embedded \
             SQLite state; back up etcd with `etcdctl snapshot save`"
        );
    };
    Ok((config.jumpgate.data_dir, db))
}

pub fn create(file: &Path, location: &StateLocation) -> Result<()> {
    let (_, db) = locate(location)?;
    if !db.exists() {
        bail!(
            "no cluster state at {}: pass the daemon's --data-dir (or -c its config)",
            db.display()
        );
    }
    jumpgate_backend::backup_sqlite(&db, file)
        .with_context(|| format!("backing up {} to {}", db.display(), file.display()))?;
    println!(
        "Backed up {} to {} (mode 0600: it holds the cluster's CA keys).",
        db.display(),
        file.display()
    );
    Ok(())
}

pub fn restore(file: &Path, location: &StateLocation) -> Result<()> {
    let (data_dir, db) = locate(location)?;
    if !file.exists() {
        bail!("backup file {} does not exist", file.display());
    }
    // Holding the lock proves no daemon is running on this data directory, and keeps
    // one from starting halfway through.
    let _lock = datadir::lock(&data_dir).context("restore needs the daemon to be stopped")?;
    let _storage_lock = match db.parent() {
        Some(dir) if dir != data_dir => {
            Some(datadir::lock(dir).context("restore needs the daemon to be stopped")?)
        }
        _ => None,
    };
    let saved = jumpgate_backend::restore_sqlite(file, &db)
        .with_context(|| format!("restoring {} into {}", file.display(), db.display()))?;
    println!("Restored {} into {}.", file.display(), db.display());
    if let Some(saved) = saved {
        println!("The previous state was kept as {}.", saved.display());
    }
    Ok(())
}
