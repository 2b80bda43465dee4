//! A limit on the connections one source address holds while it has not proven who it
//! is: in its handshake (PROXY header, ClientHello, TLS), on the anonymous web API, or in
//! the auth passthrough until the auth server answers. One client cannot fill the
//! proxy's connection slots and lock out users and agents (as OpenSSH's `MaxStartups`,
//! per address). Connections that authenticated with a cluster certificate (agents'
//! tunnels, users' SSH) leave the count, so many agents behind one NAT are not limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts connections per source address, up to a limit.
#[derive(Debug)]
pub struct PerSourceLimit {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it (or [`SourceSlot::release`]) uncounts it.
#[derive(Debug)]
pub struct SourceSlot {
    owner: Option<Arc<PerSourceLimit>>,
    source: IpAddr,
}

impl PerSourceLimit {
    pub fn new(limit: usize) -> Arc<PerSourceLimit> {
        Arc::new(PerSourceLimit {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a connection from `source`, or `None` when it holds `limit` already.
    pub fn acquire(self: &Arc<Self>, source: IpAddr) -> Option<SourceSlot> {
        let mut counts = self.counts();
        let count = counts.entry(source).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            owner: Some(self.clone()),
            source,
        })
    }

    /// How many connections `source` holds now.
    pub fn held(&self, source: IpAddr) -> usize {
        self.counts().get(&source).copied().unwrap_or(0)
    }
}

impl SourceSlot {
    /// Uncounts the connection now (it authenticated).
    pub fn release(mut self) {
        self.give_back();
    }

    fn give_back(&mut self) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        let mut counts = owner.counts();
        if let Some(count) = counts.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_its_own_limit_and_slots_come_back() {
        let limit = PerSourceLimit::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limit.acquire(a).unwrap();
        let second = limit.acquire(a).unwrap();
        assert!(limit.acquire(a).is_none(), "a third from the same source");
        assert!(limit.acquire(b).is_some(), "another source is not affected");
        drop(first);
        let third = limit.acquire(a).unwrap();
        second.release();
        third.release();
        assert_eq!(limit.held(a), 0);
        assert!(limit.counts().is_empty(), "no entry left behind");
    }
}
