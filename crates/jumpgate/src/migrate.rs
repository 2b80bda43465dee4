//! `jumpgate storage migrate --from CONFIG --to CONFIG`: moves a stopped cluster's state
//! from one store to another (seed 000's operator leaving SQLite for PostgreSQL or etcd).
//!
//! The copy is item by item with the items' own expiries; the stores hand out their own
//! revisions, which nothing outside a store compares. Afterwards both stores are read again
//! and compared by count and by a SHA-256 over every key, value and expiry (to the
//! millisecond, the finest every store keeps). Audit events, with `--audit`, are paged out
//! of the source's searchable store and appended to every target store; appends are
//! idempotent by event id, so running the command again is safe.

use crate::storage::StoragePlan;
use crate::{config_file, datadir};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use jumpgate_audit::{AuditLog, MAX_LIMIT, SearchQuery, Timestamp};
use jumpgate_backend::{Backend, Item, Key, KeyRange, NewItem};
use jumpgate_types::Config;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `jumpgate storage migrate` was asked to do.
#[derive(Debug)]
pub struct Migration {
    pub from: PathBuf,
    pub to: PathBuf,
    pub force: bool,
    pub audit: bool,
    pub recordings: bool,
}

/// Items written at once: enough to hide a networked store's round trips.
const CONCURRENT_WRITES: usize = 16;

/// Items expiring this soon after the check are left out of the comparison: they may be
/// gone from one store and not yet from the other.
const EXPIRY_SLACK: Duration = Duration::from_secs(5);

pub async fn run(migration: &Migration) -> Result<()> {
    let source = Side::load("--from", &migration.from)?;
    let target = Side::load("--to", &migration.to)?;
    if source.plan.describe() == target.plan.describe() {
        bail!(
            "--from and --to name the same store ({}): nothing to move",
            source.plan.describe()
        );
    }
    // A SQLite store's data directory lock proves no daemon uses it right now.
    let _locks = [source.lock()?, target.lock()?];
    if let Some(db) = crate::storage::sqlite_path(&source.config)
        && !db.exists()
    {
        bail!(
            "--from {}: no cluster state at {}; is data_dir right?",
            migration.from.display(),
            db.display()
        );
    }

    let from = source.open().await?;
    let to = target.open().await?;
    let outcome = copy_state(migration, &source, &target, from.as_ref(), to.as_ref()).await;
    let closed = [from.close().await, to.close().await];
    outcome?;
    for result in closed {
        result.context("closing a store")?;
    }

    if migration.audit {
        copy_audit(&source, &target).await?;
    }
    if migration.recordings {
        copy_recordings(&source, &target).await?;
    }
    println!(
        "Done. Point the auth servers at {} (its storage section) and start them.",
        migration.to.display()
    );
    Ok(())
}

/// One side of the migration: its config and where its state lives.
struct Side {
    flag: &'static str,
    path: PathBuf,
    config: Config,
    plan: StoragePlan,
}

impl Side {
    fn load(flag: &'static str, path: &std::path::Path) -> Result<Side> {
        let config =
            config_file::load(path).with_context(|| format!("{flag} {}", path.display()))?;
        let plan = StoragePlan::from_config(&config)
            .with_context(|| format!("{flag} {}", path.display()))?;
        if matches!(plan, StoragePlan::Memory) {
            bail!(
                "{flag} {}: storage type memory keeps nothing once its process exits; \
                 there is nothing to migrate from or to",
                path.display()
            );
        }
        jumpgate_audit::parse_uris(&config.jumpgate.storage.audit_events_uri).with_context(
            || {
                format!(
                    "{flag} {}: jumpgate.storage.audit_events_uri",
                    path.display()
                )
            },
        )?;
        Ok(Side {
            flag,
            path: path.to_path_buf(),
            config,
            plan,
        })
    }

    fn lock(&self) -> Result<Option<datadir::DataDirLock>> {
        let Some(db) = crate::storage::sqlite_path(&self.config) else {
            return Ok(None);
        };
        let Some(dir) = db.parent() else {
            return Ok(None);
        };
        if !dir.exists() {
            return Ok(None);
        }
        datadir::lock(dir).map(Some).with_context(|| {
            format!(
                "{} {}: stop the daemon using this state before migrating it",
                self.flag,
                self.path.display()
            )
        })
    }

    async fn open(&self) -> Result<Arc<dyn Backend>> {
        self.plan.open().await.with_context(|| {
            format!(
                "{} {}: opening {}",
                self.flag,
                self.path.display(),
                self.plan.describe()
            )
        })
    }
}

fn everything() -> Result<KeyRange> {
    Ok(KeyRange::Prefix(Key::new("/").context("the root key")?))
}

async fn copy_state(
    migration: &Migration,
    source: &Side,
    target: &Side,
    from: &dyn Backend,
    to: &dyn Backend,
) -> Result<()> {
    let all = everything()?;
    let existing = to
        .get_range(&all, Some(1))
        .await
        .context("reading the target")?;
    if !existing.is_empty() {
        if !migration.force {
            bail!(
                "--to {}: {} already holds cluster state; refusing to overwrite it. Check \
                 that it is the right store, then pass --force to empty it and copy",
                migration.to.display(),
                target.plan.describe()
            );
        }
        let removed = to.delete_range(&all).await.context("emptying the target")?;
        println!("Emptied the target: {removed} items removed (--force).");
    }

    let items = from
        .get_range(&all, None)
        .await
        .context("reading the source")?;
    println!(
        "Copying {} items from {} to {} ...",
        items.len(),
        source.plan.describe(),
        target.plan.describe()
    );
    let mut writes = futures::stream::iter(items.into_iter().map(|item| async move {
        let key = item.key.clone();
        let mut new = NewItem::new(item.key, item.value);
        if let Some(expires) = item.expires {
            new = new.expiring(expires);
        }
        to.put(new)
            .await
            .with_context(|| format!("writing {key} to the target"))
    }))
    .buffer_unordered(CONCURRENT_WRITES);
    while let Some(written) = writes.next().await {
        written?;
    }

    // Both stores read again after the copy, compared as of one instant.
    let horizon = SystemTime::now() + EXPIRY_SLACK;
    let (source_sum, source_count) = digest(&from.get_range(&all, None).await?, horizon);
    let (target_sum, target_count) = digest(&to.get_range(&all, None).await?, horizon);
    if (source_sum.as_str(), source_count) != (target_sum.as_str(), target_count) {
        bail!(
            "the stores differ after the copy: source {source_count} items (sha256 {source_sum}), \
             target {target_count} items (sha256 {target_sum}); was a daemon writing to one of them?"
        );
    }
    println!("Verified: {target_count} items, sha256 {target_sum} on both sides.");
    Ok(())
}

/// A SHA-256 over every item that will still exist at `horizon` (key, value, expiry in
/// milliseconds, each length-prefixed) in key order, and how many there are.
fn digest(items: &[Item], horizon: SystemTime) -> (String, usize) {
    let mut hash = Sha256::new();
    let mut count = 0;
    let mut sorted: Vec<&Item> = items
        .iter()
        .filter(|item| item.expires.is_none_or(|at| at > horizon))
        .collect();
    sorted.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    for item in sorted {
        let key = item.key.as_str().as_bytes();
        hash.update((key.len() as u64).to_be_bytes());
        hash.update(key);
        hash.update((item.value.len() as u64).to_be_bytes());
        hash.update(&item.value);
        let expires_ms = item
            .expires
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        hash.update(expires_ms.to_be_bytes());
        count += 1;
    }
    (hex::encode(hash.finalize()), count)
}

/// Pages every event out of the source's searchable store into the target's stores.
async fn copy_audit(source: &Side, target: &Side) -> Result<()> {
    let source_uris = &source.config.jumpgate.storage.audit_events_uri;
    let searched: Arc<dyn AuditLog> = match source_uris.first() {
        // Only the first store is searchable in Teleport's rule; it is the one to read.
        Some(first) => jumpgate_audit::open_configured(
            &source.config.jumpgate.data_dir,
            std::slice::from_ref(first),
        )
        .await
        .context("--from: opening the audit log")?,
        None => {
            let path = jumpgate_audit::configured::sqlite_path(&source.config.jumpgate.data_dir);
            if !path.exists() {
                bail!("--from: no audit log at {}", path.display());
            }
            Arc::new(jumpgate_audit::SqliteAuditLog::open(&path).await?)
        }
    };
    let into = jumpgate_audit::open_configured(
        &target.config.jumpgate.data_dir,
        &target.config.jumpgate.storage.audit_events_uri,
    )
    .await
    .context("--to: opening the audit log")?;

    let query = SearchQuery::new(
        Timestamp::parse_rfc3339("0000-01-01T00:00:00Z")?,
        Timestamp::parse_rfc3339("9999-12-31T23:59:59.999Z")?,
    )
    .limit(MAX_LIMIT);
    let mut cursor: Option<String> = None;
    let mut copied: u64 = 0;
    loop {
        let page_query = match &cursor {
            Some(c) => query.clone().cursor(c.clone()),
            None => query.clone(),
        };
        let page = searched
            .search(page_query)
            .await
            .context("reading audit events")?;
        for event in page.events {
            into.append(event).await.context("writing an audit event")?;
            copied += 1;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    searched.close().await?;
    into.close().await?;
    println!("Copied {copied} audit events (already present ones are stored once).");
    Ok(())
}

/// Copies every session recording the source's store holds into the target's, in parts,
/// resuming one the target holds only part of (an earlier, interrupted migration) and
/// skipping one it holds whole; then compares each copy with its original by SHA-256.
async fn copy_recordings(source: &Side, target: &Side) -> Result<()> {
    let from = open_recordings(source)
        .await
        .context("--from: opening the session recordings")?;
    let into = open_recordings(target)
        .await
        .context("--to: opening the session recordings")?;
    let recordings = from
        .list()
        .await
        .context("--from: listing the recordings")?;
    let (mut copied, mut bytes) = (0usize, 0u64);
    for recording in &recordings {
        let id = &recording.session_id;
        let mut offset = match into.stat(id).await.context("--to: reading a recording")? {
            Some(held) if held.size > recording.size => bail!(
                "--to already holds recording {id} with {} bytes, more than the {} of --from: \
                 it is not the same recording; remove it from the target first",
                held.size,
                recording.size
            ),
            Some(held) => held.size,
            None => 0,
        };
        while offset < recording.size {
            let part = from
                .read_range(id, offset, jumpgate_audit::recording::MAX_PART_LEN as u64)
                .await
                .with_context(|| format!("--from: reading recording {id}"))?;
            if part.is_empty() {
                bail!("--from: recording {id} ended at {offset} bytes, before its listed size");
            }
            let len = part.len() as u64;
            into.append_part(id, offset, part)
                .await
                .with_context(|| format!("--to: writing recording {id}"))?;
            offset += len;
            bytes += len;
        }
        if recording.completed {
            into.complete(id)
                .await
                .with_context(|| format!("--to: completing recording {id}"))?;
        }
        let (original, copy) = (
            recording_digest(from.as_ref(), id, recording.size).await?,
            recording_digest(into.as_ref(), id, recording.size).await?,
        );
        if original != copy {
            bail!("recording {id} differs after the copy (SHA-256 {original} vs {copy})");
        }
        copied += 1;
    }
    println!(
        "Copied {copied} session recordings ({bytes} new bytes); every one matches its original \
         (SHA-256)."
    );
    Ok(())
}

/// The recording store one side's config names.
async fn open_recordings(
    side: &Side,
) -> Result<Arc<dyn jumpgate_audit::RecordingStore>, jumpgate_auth::lifecycle::AuthServiceError> {
    jumpgate_auth::lifecycle::open_recordings(
        &side.config.jumpgate.data_dir,
        side.config.jumpgate.storage.audit_sessions_uri.as_ref(),
    )
    .await
}

/// SHA-256 of the first `len` bytes of a recording, read in parts.
async fn recording_digest(
    store: &dyn jumpgate_audit::RecordingStore,
    id: &jumpgate_audit::recording::SessionId,
    len: u64,
) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < len {
        let part = store
            .read_range(
                id,
                offset,
                (len - offset).min(jumpgate_audit::recording::MAX_PART_LEN as u64),
            )
            .await
            .with_context(|| format!("reading recording {id}"))?;
        if part.is_empty() {
            bail!("recording {id} ends at {offset} bytes, before {len}");
        }
        offset += part.len() as u64;
        hasher.update(&part);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use jumpgate_backend::Revision;

    fn item(key: &str, value: &str, expires: Option<SystemTime>, revision: i64) -> Item {
        Item {
            key: Key::new(key).unwrap(),
            value: value.as_bytes().to_vec(),
            expires,
            revision: Revision::from_raw(revision),
        }
    }

    /// The comparison sees every difference a copy could introduce, and nothing else.
    #[test]
    fn the_digest_covers_keys_values_and_expiries_but_not_revisions_or_order() {
        let now = SystemTime::now();
        let later = now + Duration::from_secs(3600);
        let base = vec![item("/a", "1", None, 1), item("/b", "2", Some(later), 2)];
        let (sum, count) = digest(&base, now);
        assert_eq!(count, 2);
        // Other revisions and another order: the same state.
        let reordered = vec![item("/b", "2", Some(later), 9), item("/a", "1", None, 7)];
        assert_eq!(digest(&reordered, now), (sum.clone(), 2));
        // A changed value, key or expiry, or a missing item: different.
        for changed in [
            vec![item("/a", "x", None, 1), item("/b", "2", Some(later), 2)],
            vec![item("/c", "1", None, 1), item("/b", "2", Some(later), 2)],
            vec![item("/a", "1", None, 1), item("/b", "2", None, 2)],
            vec![item("/a", "1", None, 1)],
            // Length prefixes: "/a"+"12" is not "/a1"+"2".
            vec![item("/a1", "", None, 1), item("/b", "2", Some(later), 2)],
        ] {
            assert_ne!(digest(&changed, now).0, sum, "{changed:?}");
        }
        // An item about to expire is left out on both sides.
        let mut expiring = base.clone();
        expiring.push(item("/c", "3", Some(now + Duration::from_secs(1)), 3));
        assert_eq!(digest(&expiring, now + EXPIRY_SLACK), (sum, 2));
    }
}
