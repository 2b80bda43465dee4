//! What `/readyz` reports: each component of the daemon (backend, auth, proxy, agent) with
//! its current problem, if any. Services set their own entry as they start, lose a
//! dependency or recover; the daemon serves the whole map.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared by every service of one daemon; clones see the same map.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    problems: Arc<Mutex<BTreeMap<&'static str, Option<String>>>>,
}

impl Readiness {
    /// Registers a component that is not ready yet.
    pub fn register(&self, component: &'static str, why: &str) {
        self.set(component, Some(why.to_string()));
    }

    pub fn ready(&self, component: &'static str) {
        self.set(component, None);
    }

    pub fn not_ready(&self, component: &'static str, why: String) {
        self.set(component, Some(why));
    }

    fn set(&self, component: &'static str, problem: Option<String>) {
        let mut problems = self.problems.lock().unwrap_or_else(|p| p.into_inner());
        problems.insert(component, problem);
    }

    /// Every component with its problem (`None` = ready).
    pub fn snapshot(&self) -> BTreeMap<&'static str, Option<String>> {
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `component` is registered and ready.
    pub fn is_ready(&self, component: &'static str) -> bool {
        matches!(self.snapshot().get(component), Some(None))
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn a_component_is_ready_only_once_it_says_so() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready("proxy"));
        readiness.register("proxy", "starting");
        assert!(!readiness.is_ready("proxy"));
        readiness.clone().ready("proxy");
        assert!(readiness.is_ready("proxy"));
        readiness.not_ready("proxy", "auth unreachable".to_string());
        assert_eq!(
            readiness.snapshot().get("proxy"),
            Some(&Some("auth unreachable".to_string()))
        );
    }
}
