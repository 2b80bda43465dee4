//! Background-task helpers the networked backends (etcd, PostgreSQL, DynamoDB) share.

use std::sync::Mutex;
use std::time::Duration;

/// Aborts every task in `tasks` (a backend's sweeper, listener, ...), also when a panic
/// poisoned the lock: the handles are only ever taken, never left half-updated.
pub(crate) fn abort_tasks(tasks: &Mutex<Vec<tokio::task::JoinHandle<()>>>) {
    let tasks = match tasks.lock() {
        Ok(mut tasks) => std::mem::take(&mut *tasks),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    for task in tasks {
        task.abort();
    }
}

/// Spreads retries (reconnects, lost races) so that many auth servers do not retry in
/// lockstep: a uniform share of 50–100% of `delay`.
pub(crate) fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.5..1.0))
}
