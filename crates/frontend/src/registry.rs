//! The models this frontend serves, kept in step with discovery: a model is listed while at least
//! one live instance serves it and its tokenizer has loaded. Tokenizers and chat templates load off
//! the async threads, once per model name. Each model has its own router over its instances.

use crate::kv_events;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use turbine_protocols::{InstanceId, InstanceRecord, ModelCard};
use turbine_router::{KvRouter, RouterConfig, RouterMetrics};
use turbine_runtime::{Instances, RequestPlane};
use turbine_tokens::{ChatTemplate, ModelTokenizer, Tokenizer};

/// One served model: what preprocessing needs, the instances that serve it, and its router.
pub struct ModelEntry {
    pub card: ModelCard,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Option<ChatTemplate>,
    /// Unix seconds when this frontend first saw the model.
    pub created: u64,
    pub router: Arc<KvRouter>,
    instances: RwLock<BTreeMap<InstanceId, InstanceRecord>>,
}

impl ModelEntry {
    /// Loads the tokenizer and chat template named by the card. Blocking: call off the async threads.
    pub fn load(
        card: ModelCard,
        router: Arc<KvRouter>,
    ) -> Result<Self, turbine_tokens::TokensError> {
        let model = ModelTokenizer::load(std::path::Path::new(&card.source))?;
        let template = match &model.chat_template {
            Some(source) => Some(ChatTemplate::new(
                source,
                model.tokenizer.bos_token(),
                model.tokenizer.eos_token(),
            )?),
            None => None,
        };
        Ok(Self {
            card,
            tokenizer: model.tokenizer,
            template,
            created: unix_now(),
            router,
            instances: RwLock::new(BTreeMap::new()),
        })
    }

    /// The record of an instance serving this model (the router names instances by id).
    pub fn instance(&self, id: InstanceId) -> Option<InstanceRecord> {
        self.instances.read().get(&id).cloned()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct ModelRegistry {
    models: RwLock<BTreeMap<String, Arc<ModelEntry>>>,
    /// Which model each instance serves, to hand its events to the right router.
    by_instance: RwLock<HashMap<InstanceId, Arc<ModelEntry>>>,
    router_config: RouterConfig,
    router_metrics: RouterMetrics,
    plane: Arc<dyn RequestPlane>,
}

impl ModelRegistry {
    pub fn new(
        router_config: RouterConfig,
        router_metrics: RouterMetrics,
        plane: Arc<dyn RequestPlane>,
    ) -> Self {
        Self {
            models: RwLock::default(),
            by_instance: RwLock::default(),
            router_config,
            router_metrics,
            plane,
        }
    }

    /// The record of a live instance.
    pub fn instance(&self, id: InstanceId) -> Option<InstanceRecord> {
        self.by_instance.read().get(&id)?.instance(id)
    }

    /// The router of the model `instance` serves.
    pub fn router_of(&self, instance: InstanceId) -> Option<Arc<KvRouter>> {
        self.by_instance
            .read()
            .get(&instance)
            .map(|e| e.router.clone())
    }

    pub fn get(&self, name: &str) -> Option<Arc<ModelEntry>> {
        self.models.read().get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<ModelEntry>> {
        self.models.read().values().cloned().collect()
    }

    /// Follows discovery until its sender goes away.
    pub async fn follow(self: Arc<Self>, mut instances: watch::Receiver<Instances>) {
        loop {
            let snapshot = instances.borrow_and_update().clone();
            self.apply(&snapshot).await;
            if instances.changed().await.is_err() {
                return;
            }
        }
    }

    async fn apply(&self, snapshot: &Instances) {
        let mut by_model: BTreeMap<String, Vec<InstanceRecord>> = BTreeMap::new();
        for record in snapshot.values() {
            by_model
                .entry(record.model.name.clone())
                .or_default()
                .push(record.clone());
        }
        let dropped: Vec<Arc<ModelEntry>> = self
            .models
            .read()
            .iter()
            .filter(|(name, _)| !by_model.contains_key(*name))
            .map(|(_, e)| e.clone())
            .collect();
        for entry in dropped {
            entry.router.set_workers(&[]);
            self.models.write().remove(&entry.card.name);
        }
        let mut by_instance = HashMap::new();
        for (name, records) in by_model {
            let entry = match self.get(&name) {
                Some(entry) => entry,
                None => match self.load(records[0].model.clone()).await {
                    Some(entry) => {
                        self.models.write().insert(name.clone(), entry.clone());
                        entry
                    }
                    None => continue,
                },
            };
            if records.iter().any(|r| r.model != entry.card) {
                tracing::warn!(model = %name, "instances announce different model cards; using the first one seen");
            }
            let ids: Vec<InstanceId> = records.iter().map(|r| r.id).collect();
            for &id in &ids {
                by_instance.insert(id, entry.clone());
            }
            *entry.instances.write() = records.into_iter().map(|r| (r.id, r)).collect();
            // New workers: fetch their caches so the index starts out right.
            for worker in entry.router.set_workers(&ids) {
                let Some(instance) = entry.instance(worker) else {
                    continue;
                };
                let router = entry.router.clone();
                let plane = self.plane.clone();
                tokio::spawn(async move {
                    kv_events::catch_up(&router, plane.as_ref(), &instance, 0).await;
                });
            }
        }
        *self.by_instance.write() = by_instance;
    }

    async fn load(&self, card: ModelCard) -> Option<Arc<ModelEntry>> {
        let router = KvRouter::new(
            self.router_config.clone(),
            card.block_size as usize,
            self.router_metrics.for_model(&card.name),
        );
        load(card, router).await
    }
}

async fn load(card: ModelCard, router: Arc<KvRouter>) -> Option<Arc<ModelEntry>> {
    let name = card.name.clone();
    let source = card.source.clone();
    match tokio::task::spawn_blocking(move || ModelEntry::load(card, router)).await {
        Ok(Ok(entry)) => {
            tracing::info!(model = %name, %source, "model registered");
            Some(Arc::new(entry))
        }
        Ok(Err(err)) => {
            tracing::error!(model = %name, %source, "cannot load the model's tokenizer: {err}");
            None
        }
        Err(err) => {
            tracing::error!(model = %name, "tokenizer loading panicked: {err}");
            None
        }
    }
}
