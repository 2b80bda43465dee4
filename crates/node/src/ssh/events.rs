//! The node's audit events, sent to the auth service (`EmitEvents`) in the background:
//! the SSH path never waits for them. Events queue in memory while the auth API is away
//! (up to [`MAX_QUEUED`]; beyond that the oldest are dropped and the loss is logged).

use jumpgate_api::{AuthClient, mirror::Connect, proto};
use jumpgate_audit::AuditEvent;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, warn};

const MAX_QUEUED: usize = 10_000;
const BATCH: usize = 500;
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// How long the last flush at shutdown may take.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// Where the SSH service puts its audit events.
#[derive(Debug, Clone, Default)]
pub struct EventSink {
    queue: Arc<Mutex<VecDeque<AuditEvent>>>,
    wake: Arc<Notify>,
}

impl EventSink {
    /// Queues an event; never blocks.
    pub fn emit(&self, event: AuditEvent) {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if queue.len() >= MAX_QUEUED {
            queue.pop_front();
            warn!("the audit queue is full (auth unreachable for long); dropped the oldest event");
        }
        queue.push_back(event);
        drop(queue);
        self.wake.notify_one();
    }

    fn take_batch(&self) -> Vec<AuditEvent> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = queue.len().min(BATCH);
        queue.drain(..n).collect()
    }

    fn put_back(&self, events: Vec<AuditEvent>) {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in events.into_iter().rev() {
            queue.push_front(event);
        }
        while queue.len() > MAX_QUEUED {
            queue.pop_back();
        }
    }

    /// Sends queued events until `stop` resolves, then tries once more to flush.
    pub async fn run(self, connect: Connect, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut client: Option<AuthClient> = None;
        loop {
            let sent = self.send_all(&mut client, &connect).await;
            let wait = if sent {
                Duration::from_secs(3600)
            } else {
                RETRY_EVERY
            };
            tokio::select! {
                () = &mut stop => {
                    // A last try, bounded: the auth service may be stopping too.
                    let _ = tokio::time::timeout(FINAL_FLUSH, self.send_all(&mut client, &connect)).await;
                    return;
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends everything queued; false if some could not be sent.
    async fn send_all(&self, client: &mut Option<AuthClient>, connect: &Connect) -> bool {
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                return true;
            }
            if client.is_none() {
                match connect().await {
                    Ok(fresh) => *client = Some(fresh),
                    Err(err) => {
                        debug!(%err, "cannot reach the auth API for audit events; will retry");
                        self.put_back(batch);
                        return false;
                    }
                }
            }
            let Some(api) = client.as_mut() else {
                self.put_back(batch);
                return false;
            };
            let events = batch
                .iter()
                .filter_map(|event| serde_json::to_string(event).ok())
                .collect();
            match api.emit_events(proto::EmitEventsRequest { events }).await {
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    // Retrying would fail the same way: keep the audit log moving.
                    warn!(error = %status.message(), count = batch.len(), "the auth service refused audit events");
                }
                Err(status) => {
                    debug!(error = %status.message(), "sending audit events failed; will retry");
                    *client = None;
                    self.put_back(batch);
                    return false;
                }
            }
        }
    }
}
