//! The `Watch` RPC: proxies and nodes keep their in-memory copies of roles, users, locks,
//! nodes and proxies current from auth's own watch-fed cache, instead of re-reading whole
//! kinds every few seconds.
//!
//! A stream sends a snapshot of the kind (one PUT per resource, then READY), then every
//! change as the cache applies it. The snapshot and the subscription are taken together
//! under the cache's lock ([`StateCache::snapshot_and_follow`]), so nothing is missed or
//! sent twice. A watcher that falls more than the cache's buffer behind, or a cache that
//! re-read the whole store, ends the stream with `ABORTED`: the watcher starts over with
//! a new snapshot. Auth restarting ends it too; the watcher reconnects with backoff and
//! serves its last copy meanwhile.
//!
//! Who may watch what is the `GetResources` rule (`list` on the kind): nodes get roles,
//! users (without secrets) and locks; proxies also nodes and proxies. A stream is
//! re-checked every [`RECHECK_EVERY`] and on every change: a caller whose certificate is
//! no longer trusted (expired, CA rotated out) or who is locked stops getting changes.

use super::AuthServer;
use super::caller::{Caller, traits_of};
use super::errors::ServiceError;
use super::locks::LOCKS_PREFIX;
use super::resources::canonical_kind;
use crate::cache::Change;
use crate::users::User;
use jumpgate_api::proto::{self, watch_event::Op};
use jumpgate_pki::IdentityKind;
use jumpgate_types::UserView;
use jumpgate_types::role::{kinds, verbs};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// What the `Watch` RPC returns.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::WatchEvent, Status>> + Send>>;

/// How often a live stream re-checks its caller's certificate and locks when nothing
/// changes.
const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// Events buffered per stream before the sender waits for the watcher to read.
const STREAM_BUFFER: usize = 256;

/// The backend prefix a watchable kind lives under.
fn watched_prefix(kind: &str) -> Option<&'static str> {
    Some(match kind {
        kinds::ROLE => "/roles/",
        kinds::USER => "/users/",
        kinds::LOCK => LOCKS_PREFIX,
        kinds::NODE => "/presence/node/",
        kinds::PROXY => "/presence/proxy/",
        _ => return None,
    })
}

fn event(op: Op, name: &str, document: String) -> proto::WatchEvent {
    proto::WatchEvent {
        op: op.into(),
        name: name.to_string(),
        document,
        sent_unix_micros: 0,
    }
}

/// Now, in Unix microseconds.
fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl AuthServer {
    /// Opens a watch of `kind` for `caller` (see the module docs).
    pub(crate) async fn watch_for(
        &self,
        caller: &Caller,
        client_cert: Option<Arc<Vec<u8>>>,
        kind: &str,
    ) -> Result<WatchStream, ServiceError> {
        let kind = canonical_kind(kind).ok_or_else(|| {
            ServiceError::invalid(format!(
                "unknown resource kind {kind:?}; one may watch role, user, lock, node or proxy"
            ))
        })?;
        let prefix = watched_prefix(kind).ok_or_else(|| {
            ServiceError::invalid(format!(
                "{kind} cannot be watched; one may watch role, user, lock, node or proxy"
            ))
        })?;
        // Users ask for what they may see per request (a user's node list is filtered
        // by their roles); a stream is for the cluster's own services.
        self.require_kind(
            caller,
            "Watch",
            &[IdentityKind::Proxy, IdentityKind::Node, IdentityKind::Admin],
        )
        .await?;
        self.require_rule(caller, "Watch", kind, verbs::LIST)
            .await?;
        let (snapshot, mut changes) = self.inner.cache.snapshot_and_follow(prefix);
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let server = self.clone();
        let caller = caller.clone();
        tokio::spawn(async move {
            let _watching = jumpgate_telemetry::Active::labelled(|m| &m.watch_streams, &[kind]);
            for (key, value) in snapshot {
                if let Some(put) = server.watched_document(kind, prefix, &key, &value)
                    && sender.send(Ok(put)).await.is_err()
                {
                    return;
                }
            }
            if sender
                .send(Ok(event(Op::Ready, "", String::new())))
                .await
                .is_err()
            {
                return;
            }
            let mut recheck = tokio::time::interval(RECHECK_EVERY);
            recheck.tick().await;
            loop {
                let change = tokio::select! {
                    change = changes.recv() => change,
                    _ = recheck.tick() => {
                        if let Err(err) = server.still_trusted(&caller, client_cert.as_deref()) {
                            let _ = sender.send(Err(err.into())).await;
                            return;
                        }
                        continue;
                    }
                    () = sender.closed() => return,
                };
                let next = match change {
                    Ok(Change::Put { key, value }) if key.starts_with(prefix) => {
                        server.watched_document(kind, prefix, &key, &value)
                    }
                    Ok(Change::Delete { key }) => key
                        .strip_prefix(prefix)
                        .map(|name| event(Op::Delete, name, String::new())),
                    Ok(Change::Put { .. }) => None,
                    Ok(Change::Replaced) | Err(RecvError::Lagged(_)) => {
                        let _ = sender
                            .send(Err(Status::aborted(
                                "the watch fell behind the auth server's copy; watch again \
                                 for a fresh snapshot",
                            )))
                            .await;
                        return;
                    }
                    Err(RecvError::Closed) => {
                        let _ = sender
                            .send(Err(Status::unavailable("the auth server is stopping")))
                            .await;
                        return;
                    }
                };
                let Some(next) = next else { continue };
                if let Err(err) = server.still_trusted(&caller, client_cert.as_deref()) {
                    let _ = sender.send(Err(err.into())).await;
                    return;
                }
                let next = proto::WatchEvent {
                    sent_unix_micros: unix_micros(),
                    ..next
                };
                if sender.send(Ok(next)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }

    /// The PUT for one cached item of `kind`, as `GetResources` would return it (users
    /// as their [`UserView`]: no secrets, no lockout state).
    fn watched_document(
        &self,
        kind: &str,
        prefix: &str,
        key: &str,
        value: &[u8],
    ) -> Option<proto::WatchEvent> {
        let name = key.strip_prefix(prefix)?;
        let document = if kind == kinds::USER {
            let user: User = serde_json::from_slice(value).ok()?;
            UserView {
                name: user.name.clone(),
                roles: user.roles.clone(),
                traits: traits_of(&user),
            }
            .to_json()
        } else {
            String::from_utf8_lossy(value).into_owned()
        };
        Some(event(Op::Put, name, document))
    }

    /// Whether the caller of a live stream is still who may read it: a certificate still
    /// trusted now (not expired, its CA not rotated out) and no lock naming it.
    fn still_trusted(
        &self,
        caller: &Caller,
        client_cert: Option<&Vec<u8>>,
    ) -> Result<(), ServiceError> {
        if let Some(cert) = client_cert {
            self.authorities()
                .tls
                .verify(cert, SystemTime::now())
                .map_err(|err| {
                    ServiceError::Unauthenticated(format!("client certificate: {err}"))
                })?;
        }
        self.check_caller_not_locked(caller)
    }
}
