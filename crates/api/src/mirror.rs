//! An in-memory copy of some of the cluster state, refreshed from the auth API in the
//! background, for services away from the backend (proxies, nodes): what they need on a
//! connection path (roles, users, nodes) is read from memory, never from a round trip.
//!
//! Each kind is re-read every `every` with `GetResources`; a refresh that fails keeps
//! the last good copy (stale but available), logs why, and reconnects.

use crate::AuthClient;
use crate::proto;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Makes a fresh auth API client (after a failure, or a renewed identity).
pub type Connect =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<AuthClient, String>> + Send>> + Send + Sync>;

/// The last copy of one kind's documents, parsed by the owner's parser.
#[derive(Debug)]
pub struct Mirror<T> {
    kind: &'static str,
    current: RwLock<Arc<Vec<T>>>,
    loaded: watch::Sender<bool>,
    /// Counts successful refreshes, so a caller can wait for the next one.
    generation: watch::Sender<u64>,
    /// Asks the refresher for a refresh now.
    wake: tokio::sync::Notify,
}

impl<T: Send + Sync + 'static> Mirror<T> {
    /// Starts refreshing `kind` every `every`, parsing each document with `parse`
    /// (documents it refuses are skipped and logged), until `stop` resolves.
    pub fn spawn(
        kind: &'static str,
        every: Duration,
        connect: Connect,
        parse: fn(&str) -> Result<T, String>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Arc<Mirror<T>> {
        let (loaded, _) = watch::channel(false);
        let mirror = Arc::new(Mirror {
            kind,
            current: RwLock::new(Arc::new(Vec::new())),
            loaded,
            generation: watch::Sender::new(0),
            wake: tokio::sync::Notify::new(),
        });
        let refresher = mirror.clone();
        tokio::spawn(async move {
            tokio::pin!(stop);
            let mut client: Option<AuthClient> = None;
            loop {
                refresher.refresh(&mut client, &connect, parse).await;
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(every) => {}
                    () = refresher.wake.notified() => {}
                }
            }
        });
        mirror
    }

    async fn refresh(
        &self,
        client: &mut Option<AuthClient>,
        connect: &Connect,
        parse: fn(&str) -> Result<T, String>,
    ) {
        if client.is_none() {
            match connect().await {
                Ok(fresh) => *client = Some(fresh),
                Err(err) => {
                    warn!(kind = self.kind, %err, "cannot reach the auth API; serving the last copy");
                    return;
                }
            }
        }
        let Some(api) = client.as_mut() else { return };
        let request = proto::GetResourcesRequest {
            kind: self.kind.to_string(),
            name: String::new(),
        };
        match api.get_resources(request).await {
            Ok(response) => {
                let documents = response.into_inner().documents;
                let parsed: Vec<T> = documents
                    .iter()
                    .filter_map(|document| match parse(document) {
                        Ok(item) => Some(item),
                        Err(err) => {
                            debug!(kind = self.kind, %err, "skipped an unusable document");
                            None
                        }
                    })
                    .collect();
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(parsed);
                self.loaded.send_replace(true);
                self.generation.send_modify(|generation| *generation += 1);
            }
            Err(status) => {
                warn!(kind = self.kind, error = %status.message(), "refreshing from the auth API failed; serving the last copy");
                // Reconnect next time: the identity may have been renewed.
                *client = None;
            }
        }
    }

    /// A mirror holding `items` that is never refreshed (tests, fixed views).
    pub fn fixed(kind: &'static str, items: Vec<T>) -> Arc<Mirror<T>> {
        let (loaded, _) = watch::channel(true);
        Arc::new(Mirror {
            kind,
            current: RwLock::new(Arc::new(items)),
            loaded,
            generation: watch::Sender::new(0),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The last copy (empty until the first refresh).
    pub fn current(&self) -> Arc<Vec<T>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Refreshes now and waits for it, at most `timeout`: for a decision that would
    /// refuse on the copy held (a user, role or node created a moment ago), so a write
    /// is seen at once rather than at the next periodic refresh. Says whether it did.
    pub async fn refresh_now(&self, timeout: Duration) -> bool {
        let mut generation = self.generation.subscribe();
        let seen = *generation.borrow_and_update();
        self.wake.notify_one();
        tokio::time::timeout(timeout, generation.wait_for(|current| *current > seen))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    /// A receiver that changes after every successful refresh (to act on new state, such
    /// as locks that end live sessions).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Waits until the first refresh succeeded, at most `timeout`; says whether it did.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        let mut loaded = self.loaded.subscribe();
        tokio::time::timeout(timeout, loaded.wait_for(|done| *done))
            .await
            .is_ok_and(|result| result.is_ok())
    }
}
