//! Discovery: workers register an [`InstanceRecord`] and frontends watch the set of live instances.
//!
//! Invariant: the watched set is always a complete snapshot (never a diff), so a watcher that
//! misses intermediate updates still converges on the current truth.

use crate::RuntimeError;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use turbine_protocols::{InstanceId, InstanceRecord};

/// A snapshot of every live instance.
pub type Instances = Arc<BTreeMap<InstanceId, InstanceRecord>>;

pub trait Discovery: Send + Sync {
    /// Announces an instance; it stays listed until deregistered (or, for networked
    /// implementations, until its lease expires).
    fn register(&self, record: InstanceRecord) -> BoxFuture<'_, Result<(), RuntimeError>>;
    fn deregister(&self, id: InstanceId) -> BoxFuture<'_, Result<(), RuntimeError>>;
    /// The live set now, updated on every change.
    fn watch(&self) -> watch::Receiver<Instances>;
}

/// Discovery inside one process.
pub struct EmbeddedDiscovery {
    instances: watch::Sender<Instances>,
}

impl Default for EmbeddedDiscovery {
    fn default() -> Self {
        Self {
            instances: watch::Sender::new(Arc::default()),
        }
    }
}

impl EmbeddedDiscovery {
    fn update(
        &self,
        edit: impl FnOnce(&mut BTreeMap<InstanceId, InstanceRecord>) -> Result<(), RuntimeError>,
    ) -> Result<(), RuntimeError> {
        let mut result = Ok(());
        self.instances.send_if_modified(|current| {
            let mut next = (**current).clone();
            result = edit(&mut next);
            if result.is_ok() {
                *current = Arc::new(next);
            }
            result.is_ok()
        });
        result
    }
}

impl Discovery for EmbeddedDiscovery {
    fn register(&self, record: InstanceRecord) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let result = self.update(|set| {
            if set.contains_key(&record.id) {
                return Err(RuntimeError::AlreadyRegistered(record.id));
            }
            set.insert(record.id, record);
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn deregister(&self, id: InstanceId) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let result = self.update(|set| {
            set.remove(&id)
                .map(|_| ())
                .ok_or(RuntimeError::NotRegistered(id))
        });
        Box::pin(async move { result })
    }

    fn watch(&self) -> watch::Receiver<Instances> {
        self.instances.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turbine_protocols::{ModelCard, WorkerRole};

    fn record(id: u64) -> InstanceRecord {
        InstanceRecord {
            id: InstanceId(id),
            role: WorkerRole::Aggregated,
            endpoint: "local".into(),
            model: ModelCard {
                name: "m".into(),
                source: "s".into(),
                context_length: 8,
                block_size: 4,
            },
        }
    }

    #[tokio::test]
    async fn register_watch_deregister() {
        let discovery = EmbeddedDiscovery::default();
        let mut watch = discovery.watch();
        discovery.register(record(1)).await.expect("register");
        assert!(watch.has_changed().expect("open"));
        assert_eq!(watch.borrow_and_update().len(), 1);
        assert!(matches!(
            discovery.register(record(1)).await,
            Err(RuntimeError::AlreadyRegistered(_))
        ));
        assert!(
            !watch.has_changed().expect("open"),
            "a failed register changes nothing"
        );
        discovery
            .deregister(InstanceId(1))
            .await
            .expect("deregister");
        assert!(watch.borrow_and_update().is_empty());
        assert!(discovery.deregister(InstanceId(1)).await.is_err());
    }
}
