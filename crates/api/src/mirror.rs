//! An in-memory copy of some of the cluster state, kept current from the auth API, for
//! services away from the backend (proxies, nodes): what they need on a connection path
//! (roles, users, locks, nodes) is read from memory, never from a round trip.
//!
//! Each kind follows one `Watch` stream: a snapshot, then every change as auth applies it,
//! so a role removed or a lock created reaches every proxy and node within milliseconds
//! and an idle cluster costs auth nothing. When the stream ends (auth restarts, the
//! watcher fell behind) the mirror keeps serving its last copy, reconnects with jittered
//! backoff (100 ms doubling up to 5 s; at once after falling behind), and replaces the
//! copy with the new snapshot.
//!
//! When the owner's identity is renewed (a CA rotation), the mirror watches again at once
//! with the new identity. A stream opened with the old certificate would otherwise run on
//! until the old CA leaves the trust at the end of the grace period, when auth ends it at
//! the next change, and that change (a user created a moment before) would be missing
//! until the reconnection.

use crate::proto::{self, watch_event::Op};
use crate::{ApiError, AuthClient};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tonic::Code;
use tracing::{debug, info, warn};

/// Makes a fresh auth API client (after a failure, or a renewed identity).
pub type Connect = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<AuthClient, ApiError>> + Send>> + Send + Sync,
>;

/// Why a watch stream ended without an error.
enum Ended {
    /// Auth ended it (restarting, or closing the connection).
    ByAuth,
    /// The owner's identity was renewed: watch again with the new one.
    Renewed,
}

/// The first delay before reconnecting after a failure; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The current copy of one kind's resources, parsed by the owner's parser.
#[derive(Debug)]
pub struct Mirror<T> {
    kind: &'static str,
    current: RwLock<Arc<Vec<T>>>,
    loaded: watch::Sender<bool>,
    /// Counts published copies, so a caller can act on changes.
    generation: watch::Sender<u64>,
}

impl<T: Clone + Send + Sync + 'static> Mirror<T> {
    /// Starts following `kind`, parsing each document with `parse` (documents it refuses
    /// are skipped and logged), until `stop` resolves. Each change seen on `renewals` (the
    /// owner's identity, or its auth client, was renewed) starts a new stream at once, with
    /// what `connect` gives from then on.
    pub fn spawn<E: std::error::Error + 'static, R: Send + Sync + 'static>(
        kind: &'static str,
        connect: Connect,
        parse: fn(&str) -> Result<T, E>,
        renewals: watch::Receiver<R>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Arc<Mirror<T>> {
        let mirror = Arc::new(Mirror::empty(kind, false, Vec::new()));
        let follower = mirror.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop => {}
                () = follower.follow(connect, parse, renewals) => {}
            }
        });
        mirror
    }

    fn empty(kind: &'static str, loaded: bool, items: Vec<T>) -> Mirror<T> {
        Mirror {
            kind,
            current: RwLock::new(Arc::new(items)),
            loaded: watch::Sender::new(loaded),
            generation: watch::Sender::new(0),
        }
    }

    /// Watches, applies, reconnects: forever (the caller stops it).
    async fn follow<E: std::error::Error + 'static, R>(
        &self,
        connect: Connect,
        parse: fn(&str) -> Result<T, E>,
        mut renewals: watch::Receiver<R>,
    ) {
        let mut failures: u32 = 0;
        loop {
            // Whatever renewal came before this connection is in it.
            renewals.mark_unchanged();
            if failures > 0 {
                tokio::time::sleep(retry_delay(failures)).await;
            }
            let mut client = match connect().await {
                Ok(client) => client,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    warn!(kind = self.kind, %err, "cannot reach the auth API; serving the last copy");
                    continue;
                }
            };
            match self.follow_stream(&mut client, parse, &mut renewals).await {
                Ok(Ended::Renewed) => {
                    failures = 0;
                    debug!(
                        kind = self.kind,
                        "identity renewed; watching with the new one"
                    );
                }
                Ok(Ended::ByAuth) => {
                    failures = 1;
                    info!(
                        kind = self.kind,
                        "the auth API ended the watch; reconnecting"
                    );
                }
                Err(status) if status.code() == Code::Aborted => {
                    // Fell behind: start over from a new snapshot at once.
                    failures = 0;
                    jumpgate_telemetry::count(|m| &m.watch_resyncs, &[self.kind]);
                    info!(kind = self.kind, reason = status.message(), "re-syncing");
                }
                Err(status) => {
                    failures = failures.saturating_add(1);
                    warn!(kind = self.kind, error = %status.message(), "the watch failed; serving the last copy and reconnecting");
                }
            }
        }
    }

    /// One stream: the snapshot up to READY replaces the copy, then each change (or each
    /// batch of changes already received) publishes a new copy. Returns when the stream
    /// ends (`Ok` when auth ended it cleanly) or when `renewals` changes.
    async fn follow_stream<E: std::error::Error + 'static, R>(
        &self,
        client: &mut AuthClient,
        parse: fn(&str) -> Result<T, E>,
        renewals: &mut watch::Receiver<R>,
    ) -> Result<Ended, tonic::Status> {
        let request = proto::WatchRequest {
            kind: self.kind.to_string(),
        };
        let mut stream = client.watch(request).await?.into_inner();
        let mut items: BTreeMap<String, T> = BTreeMap::new();
        let mut ready = false;
        // A closed sender means no renewal will ever come.
        let mut renewals_open = true;
        loop {
            let event = tokio::select! {
                message = stream.message() => match message? {
                    Some(event) => event,
                    None => return Ok(Ended::ByAuth),
                },
                changed = renewals.changed(), if renewals_open => {
                    if changed.is_ok() {
                        return Ok(Ended::Renewed);
                    }
                    renewals_open = false;
                    continue;
                }
            };
            self.apply(&mut items, &mut ready, event, parse);
            if !ready {
                continue;
            }
            // Take what has already arrived before publishing, so a burst of changes
            // costs one copy.
            while let Ok(Ok(Some(event))) =
                tokio::time::timeout(Duration::ZERO, stream.message()).await
            {
                self.apply(&mut items, &mut ready, event, parse);
            }
            self.publish(items.values().cloned().collect());
        }
    }

    fn apply<E: std::error::Error + 'static>(
        &self,
        items: &mut BTreeMap<String, T>,
        ready: &mut bool,
        event: proto::WatchEvent,
        parse: fn(&str) -> Result<T, E>,
    ) {
        if event.sent_unix_micros > 0 {
            let sent = std::time::UNIX_EPOCH
                + Duration::from_micros(u64::try_from(event.sent_unix_micros).unwrap_or(0));
            let delay = std::time::SystemTime::now()
                .duration_since(sent)
                .unwrap_or_default();
            jumpgate_telemetry::watch_delay(self.kind, delay);
        }
        match event.op() {
            Op::Put => match parse(&event.document) {
                Ok(item) => {
                    items.insert(event.name, item);
                }
                Err(err) => {
                    debug!(kind = self.kind, name = event.name, %err, "skipped an unusable document");
                    items.remove(&event.name);
                }
            },
            Op::Delete => {
                items.remove(&event.name);
            }
            Op::Ready => *ready = true,
        }
    }

    fn publish(&self, items: Vec<T>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(items);
        self.loaded.send_replace(true);
        self.generation.send_modify(|generation| *generation += 1);
    }
}

impl<T> Mirror<T> {
    /// A mirror holding `items` that never changes (tests, fixed views).
    pub fn fixed(kind: &'static str, items: Vec<T>) -> Arc<Mirror<T>> {
        Arc::new(Mirror {
            kind,
            current: RwLock::new(Arc::new(items)),
            loaded: watch::Sender::new(true),
            generation: watch::Sender::new(0),
        })
    }

    /// The current copy (empty until the first snapshot arrived).
    pub fn current(&self) -> Arc<Vec<T>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A receiver that changes with every new copy (to act on new state, such as locks
    /// that end live sessions).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether the first snapshot has arrived (before it, [`Mirror::current`] is empty).
    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    /// Waits until the first snapshot arrived, at most `timeout`; says whether it did.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        let mut loaded = self.loaded.subscribe();
        tokio::time::timeout(timeout, loaded.wait_for(|done| *done))
            .await
            .is_ok_and(|result| result.is_ok())
    }
}

/// 100 ms doubling per failure up to 5 s, times a random factor in [0.5, 1) so that many
/// proxies and nodes do not reconnect in lockstep after an auth restart.
fn retry_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let delay = FIRST_RETRY.saturating_mul(1u32 << exponent).min(MAX_RETRY);
    let jitter = 0.5 + f64::from(rand_fraction()) / 2.0;
    delay.mul_f64(jitter)
}

/// A number in [0, 1) from the clock's nanoseconds: jitter needs no more.
fn rand_fraction() -> f32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or(0);
    (nanos % 1000) as f32 / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use tokio::sync::mpsc;
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::UnboundedReceiverStream;
    use tonic::Status;
    use tonic::codegen::{BoxFuture, http};
    use tonic::server::NamedService;
    use tonic::transport::{Endpoint, Server, Uri};

    type Script = mpsc::UnboundedSender<Result<proto::WatchEvent, Status>>;
    type Scripted = mpsc::UnboundedReceiver<Result<proto::WatchEvent, Status>>;

    /// A stand-in auth server that serves only `Watch`: each call takes the next scripted
    /// stream, whose events the test sends one at a time.
    #[derive(Clone, Default)]
    struct WatchOnly {
        streams: Arc<Mutex<VecDeque<Scripted>>>,
        /// The kind each call asked for.
        calls: Arc<Mutex<Vec<String>>>,
    }

    impl WatchOnly {
        /// The next `Watch` call's stream; the sender scripts it.
        fn next_stream(&self) -> Script {
            let (script, scripted) = mpsc::unbounded_channel();
            self.streams.lock().unwrap().push_back(scripted);
            script
        }
    }

    impl NamedService for WatchOnly {
        const NAME: &'static str = "jumpgate.auth.v1.AuthService";
    }

    impl tower::Service<http::Request<tonic::body::Body>> for WatchOnly {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            let this = self.clone();
            Box::pin(async move {
                assert_eq!(request.uri().path(), "/jumpgate.auth.v1.AuthService/Watch");
                let watch = tower::service_fn(move |call: tonic::Request<proto::WatchRequest>| {
                    this.calls.lock().unwrap().push(call.into_inner().kind);
                    let next = this.streams.lock().unwrap().pop_front();
                    async move {
                        match next {
                            Some(scripted) => {
                                Ok(tonic::Response::new(UnboundedReceiverStream::new(scripted)))
                            }
                            None => Err(Status::unavailable("no more scripted streams")),
                        }
                    }
                });
                let codec =
                    tonic_prost::ProstCodec::<proto::WatchEvent, proto::WatchRequest>::default();
                Ok(tonic::server::Grpc::new(codec)
                    .server_streaming(watch, request)
                    .await)
            })
        }
    }

    /// The stand-in, served over an in-memory HTTP/2 connection, and a [`Connect`] that
    /// counts its calls.
    async fn stand_in() -> (WatchOnly, Connect, Arc<AtomicUsize>) {
        let server = WatchOnly::default();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let incoming =
            tokio_stream::once(Ok::<_, std::io::Error>(server_io)).chain(tokio_stream::pending());
        tokio::spawn(
            Server::builder()
                .add_service(server.clone())
                .serve_with_incoming(incoming),
        );
        let client_io = Arc::new(Mutex::new(Some(client_io)));
        let channel = Endpoint::from_static("http://stand-in.invalid")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let io = client_io.lock().unwrap().take();
                async move {
                    io.map(hyper_util::rt::TokioIo::new)
                        .ok_or_else(|| std::io::Error::other("the stand-in has one connection"))
                }
            }))
            .await
            .unwrap();
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = connects.clone();
        let connect: Connect = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let client = AuthClient::new(channel.clone());
            Box::pin(async move { Ok(client) })
        });
        (server, connect, connects)
    }

    #[derive(Debug, thiserror::Error)]
    #[error("not a test document")]
    struct NotADocument;

    /// The documents are their own parsed form; "bad" is refused.
    fn parse(document: &str) -> Result<String, NotADocument> {
        match document {
            "bad" => Err(NotADocument),
            other => Ok(other.to_string()),
        }
    }

    fn event(op: Op, name: &str, document: &str) -> Result<proto::WatchEvent, Status> {
        Ok(proto::WatchEvent {
            op: op as i32,
            name: name.to_string(),
            document: document.to_string(),
            sent_unix_micros: 0,
        })
    }

    fn put(name: &str, document: &str) -> Result<proto::WatchEvent, Status> {
        event(Op::Put, name, document)
    }

    fn delete(name: &str) -> Result<proto::WatchEvent, Status> {
        event(Op::Delete, name, "")
    }

    fn ready() -> Result<proto::WatchEvent, Status> {
        event(Op::Ready, "", "")
    }

    /// Lets every task run until all wait (the paused clock advances only then).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    fn copy(mirror: &Mirror<String>) -> Vec<String> {
        mirror.current().as_ref().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn snapshot_after_ready_then_changes_then_a_resync_after_aborted() {
        let (server, connect, connects) = stand_in().await;
        let first = server.next_stream();
        let second = server.next_stream();
        let (_renewals, renewed) = watch::channel(());
        let mirror = Mirror::spawn("role", connect, parse, renewed, std::future::pending());

        // The snapshot is not served until READY says it is whole.
        first.send(put("a", "a1")).unwrap();
        first.send(put("b", "b1")).unwrap();
        first.send(put("skipped", "bad")).unwrap();
        settle().await;
        assert!(copy(&mirror).is_empty());
        assert!(!mirror.wait_loaded(Duration::ZERO).await);
        first.send(ready()).unwrap();
        settle().await;
        assert!(mirror.wait_loaded(Duration::ZERO).await);
        assert_eq!(copy(&mirror), ["a1", "b1"]);

        // After READY, each change is applied.
        first.send(put("c", "c1")).unwrap();
        first.send(delete("a")).unwrap();
        settle().await;
        assert_eq!(copy(&mirror), ["b1", "c1"]);

        // Fell behind: auth ends the stream with ABORTED. The mirror watches again at
        // once and keeps serving its last copy until the new snapshot is whole.
        first
            .send(Err(Status::aborted("the watcher fell behind")))
            .unwrap();
        settle().await;
        assert_eq!(connects.load(Ordering::SeqCst), 2);
        second.send(put("b", "b2")).unwrap();
        second.send(put("x", "x1")).unwrap();
        settle().await;
        assert_eq!(copy(&mirror), ["b1", "c1"]);
        second.send(ready()).unwrap();
        settle().await;
        // The new snapshot replaces the copy: `c`, absent from it, is gone.
        assert_eq!(copy(&mirror), ["b2", "x1"]);
        assert_eq!(*server.calls.lock().unwrap(), ["role", "role"]);
    }
    /// A renewed identity starts a new stream at once (a stream under the old certificate
    /// would be ended by auth at the end of a CA rotation's grace period, at a change the
    /// copy would then miss), and a renewal channel whose sender is gone changes nothing.
    #[tokio::test(start_paused = true)]
    async fn a_renewal_starts_a_new_stream_at_once() {
        let (server, connect, connects) = stand_in().await;
        let first = server.next_stream();
        let second = server.next_stream();
        let (renewals, renewed) = watch::channel(0u64);
        let mirror = Mirror::spawn("user", connect, parse, renewed, std::future::pending());
        first.send(put("ann", "ann")).unwrap();
        first.send(ready()).unwrap();
        settle().await;
        assert_eq!(copy(&mirror), ["ann"]);

        renewals.send_replace(1);
        settle().await;
        assert_eq!(connects.load(Ordering::SeqCst), 2, "no new stream at once");
        // The old stream is no longer read: what it would still say is not applied.
        let _ = first.send(put("stale", "stale"));
        second.send(put("ann", "ann")).unwrap();
        second.send(put("rae", "rae")).unwrap();
        second.send(ready()).unwrap();
        settle().await;
        assert_eq!(copy(&mirror), ["ann", "rae"]);

        // Without a sender no renewal comes; the stream goes on.
        drop(renewals);
        second.send(put("zed", "zed")).unwrap();
        settle().await;
        assert_eq!(copy(&mirror), ["ann", "rae", "zed"]);
        assert_eq!(connects.load(Ordering::SeqCst), 2);
    }
}
