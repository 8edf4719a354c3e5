//! The models this frontend serves, kept in step with discovery: a model is listed while at least
//! one live instance serves it and its tokenizer has loaded. Tokenizers and chat templates load off
//! the async threads, once per model name.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use turbine_protocols::{InstanceRecord, ModelCard};
use turbine_runtime::Instances;
use turbine_tokens::{ChatTemplate, ModelTokenizer, Tokenizer};

/// One served model: what preprocessing needs, and the instances that serve it.
pub struct ModelEntry {
    pub card: ModelCard,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Option<ChatTemplate>,
    /// Unix seconds when this frontend first saw the model.
    pub created: u64,
    instances: RwLock<Vec<InstanceRecord>>,
    next: AtomicUsize,
}

impl ModelEntry {
    /// Loads the tokenizer and chat template named by the card. Blocking: call off the async threads.
    pub fn load(card: ModelCard) -> Result<Self, turbine_tokens::TokensError> {
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
            instances: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
        })
    }

    /// The next instance in round-robin order, if any serves this model.
    pub fn pick_instance(&self) -> Option<InstanceRecord> {
        let instances = self.instances.read();
        if instances.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % instances.len();
        Some(instances[i].clone())
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Default)]
pub struct ModelRegistry {
    models: RwLock<BTreeMap<String, Arc<ModelEntry>>>,
}

impl ModelRegistry {
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
        self.models
            .write()
            .retain(|name, _| by_model.contains_key(name));
        for (name, records) in by_model {
            let entry = match self.get(&name) {
                Some(entry) => entry,
                None => match load(records[0].model.clone()).await {
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
            *entry.instances.write() = records;
        }
    }
}

async fn load(card: ModelCard) -> Option<Arc<ModelEntry>> {
    let name = card.name.clone();
    let source = card.source.clone();
    match tokio::task::spawn_blocking(move || ModelEntry::load(card)).await {
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
