//! Discovery on etcd. Each instance record is JSON under `/turbine/instances/{id}`, attached to its
//! process's lease (TTL 3 s, renewed every second), so the record of a process that dies is gone
//! within the TTL. Watchers list the prefix, then watch it from the next revision.
//!
//! Invariants:
//! - While etcd is unreachable, watchers keep the last snapshot (a frontend goes on serving the
//!   workers it knows) and retry with back-off; when etcd answers, they list again and publish a
//!   fresh snapshot. Any broken watch (etcd gone, compaction, cancel) is rebuilt the same way.
//! - This process's records are kept locally. When renewing the lease fails for any reason, they
//!   are put again under a new lease once etcd answers (a put moves a key to the new lease, so
//!   the old one expiring later removes nothing).

use crate::RuntimeError;
use crate::connect::host_ports;
use crate::discovery::{Discovery, Instances};
use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KeyValue, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, WatchOptions,
};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use turbine_protocols::{InstanceId, InstanceRecord};

const PREFIX: &str = "/turbine/instances/";
const LEASE_TTL_SECS: i64 = 3;
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// Bounds every request: tonic waits for a connection that cannot be made rather than failing.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Records as etcd holds them, by key.
type Records = BTreeMap<Vec<u8>, InstanceRecord>;

pub struct EtcdDiscovery {
    client: Client,
    own: Arc<Mutex<OwnInstances>>,
    instances: watch::Receiver<Instances>,
    tasks: [JoinHandle<()>; 2],
}

/// The instances this process registered and the lease they are under (none before the first
/// registration and after a failed renewal).
#[derive(Default)]
struct OwnInstances {
    lease: Option<i64>,
    records: BTreeMap<InstanceId, InstanceRecord>,
}

impl EtcdDiscovery {
    /// Connects to `etcd://HOST:PORT[,HOST:PORT…]` and lists the instances; fails if etcd does
    /// not answer within a few seconds.
    pub async fn connect(url: &str) -> Result<Self, RuntimeError> {
        let endpoints = host_ports(url, "etcd")?;
        // HTTP/2 pings find a dead connection that sends no reset; etcd refuses pings more often
        // than every 5 s.
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        let client = bounded(Client::connect(endpoints, Some(options))).await?;
        let (records, revision) = list(&client).await?;
        let (sender, instances) = watch::channel(snapshot(&records));
        let own = Arc::new(Mutex::new(OwnInstances::default()));
        let tasks = [
            tokio::spawn(follow(client.clone(), sender, records, revision)),
            tokio::spawn(renew(client.clone(), own.clone())),
        ];
        Ok(Self {
            client,
            own,
            instances,
            tasks,
        })
    }
}

impl Drop for EtcdDiscovery {
    /// Stops renewing the lease: this process's records expire within the TTL.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Discovery for EtcdDiscovery {
    fn register(&self, record: InstanceRecord) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut own = self.own.lock().await;
            if own.records.contains_key(&record.id) {
                return Err(RuntimeError::AlreadyRegistered(record.id));
            }
            let lease = match own.lease {
                Some(lease) => lease,
                None => grant(&self.client).await?,
            };
            // On failure the lease may be gone too: the renewer starts over with a new one.
            own.lease = None;
            put(&self.client, lease, &record).await?;
            own.lease = Some(lease);
            own.records.insert(record.id, record);
            Ok(())
        })
    }

    /// Deletes the record. Should etcd not answer, the record is dropped from the lease renewal
    /// (the others move to a new lease), so it expires within the TTL instead.
    fn deregister(&self, id: InstanceId) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut own = self.own.lock().await;
            own.records
                .remove(&id)
                .ok_or(RuntimeError::NotRegistered(id))?;
            if let Err(error) = bounded(self.client.clone().delete(key(id), None)).await {
                tracing::warn!(%id, %error, "could not delete the instance record; it expires with its lease");
                own.lease = None;
            }
            Ok(())
        })
    }

    fn watch(&self) -> watch::Receiver<Instances> {
        self.instances.clone()
    }
}

fn key(id: InstanceId) -> String {
    format!("{PREFIX}{id}")
}

async fn bounded<T>(
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, RuntimeError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => result.map_err(|error| RuntimeError::Etcd(error.to_string())),
        Err(_) => Err(RuntimeError::Etcd(format!(
            "no answer within {REQUEST_TIMEOUT:?}"
        ))),
    }
}

async fn grant(client: &Client) -> Result<i64, RuntimeError> {
    Ok(bounded(client.clone().lease_grant(LEASE_TTL_SECS, None))
        .await?
        .id())
}

async fn put(client: &Client, lease: i64, record: &InstanceRecord) -> Result<(), RuntimeError> {
    let value =
        serde_json::to_vec(record).map_err(|error| RuntimeError::Etcd(error.to_string()))?;
    let options = PutOptions::new().with_lease(lease);
    bounded(client.clone().put(key(record.id), value, Some(options))).await?;
    Ok(())
}

/// Keeps this process's lease alive; after any failure, puts the records again under a new one.
async fn renew(client: Client, own: Arc<Mutex<OwnInstances>>) {
    let mut keep_alive: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    let mut healthy = true;
    let mut ticks = tokio::time::interval(RENEW_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut own = own.lock().await;
        let result = match own.lease {
            Some(lease) => keep_lease(&client, lease, &mut keep_alive).await,
            None if own.records.is_empty() => continue,
            None => put_all(&client, &mut own).await,
        };
        match result {
            Ok(()) if !healthy => {
                tracing::info!("etcd lease renewed; instances registered");
                healthy = true;
            }
            Ok(()) => {}
            Err(error) => {
                if healthy {
                    tracing::warn!(%error, "etcd lease not renewed; retrying every second");
                }
                healthy = false;
                own.lease = None;
                keep_alive = None;
            }
        }
    }
}

/// One renewal on the lease's keep-alive stream, opened anew when the lease changed.
async fn keep_lease(
    client: &Client,
    lease: i64,
    keep_alive: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> Result<(), RuntimeError> {
    match keep_alive {
        Some((keeper, stream)) if keeper.id() == lease => {
            bounded(keeper.keep_alive()).await?;
            match bounded(stream.message()).await? {
                Some(response) if response.ttl() > 0 => Ok(()),
                _ => Err(RuntimeError::Etcd(format!("lease {lease:x} expired"))),
            }
        }
        // Opening the stream renews once (and fails if the lease is gone).
        _ => {
            *keep_alive = Some(bounded(client.clone().lease_keep_alive(lease)).await?);
            Ok(())
        }
    }
}

async fn put_all(client: &Client, own: &mut OwnInstances) -> Result<(), RuntimeError> {
    let lease = grant(client).await?;
    for record in own.records.values() {
        put(client, lease, record).await?;
    }
    own.lease = Some(lease);
    Ok(())
}

/// Every record under the prefix, and the revision they are at.
async fn list(client: &Client) -> Result<(Records, i64), RuntimeError> {
    let options = GetOptions::new().with_prefix();
    let response = bounded(client.clone().get(PREFIX, Some(options))).await?;
    let revision = response
        .header()
        .map(|header| header.revision())
        .ok_or_else(|| RuntimeError::Etcd("a range response without a header".into()))?;
    let records = response.kvs().iter().filter_map(decode).collect();
    Ok((records, revision))
}

/// A record as stored; a malformed one is logged and left out.
fn decode(kv: &KeyValue) -> Option<(Vec<u8>, InstanceRecord)> {
    match serde_json::from_slice(kv.value()) {
        Ok(record) => Some((kv.key().to_vec(), record)),
        Err(error) => {
            tracing::warn!(key = %String::from_utf8_lossy(kv.key()), %error, "malformed instance record ignored");
            None
        }
    }
}

fn snapshot(records: &Records) -> Instances {
    Arc::new(
        records
            .values()
            .map(|record| (record.id, record.clone()))
            .collect(),
    )
}

/// Publishes snapshots for as long as the discovery lives: watches from `revision`, and after the
/// watch breaks lists again (with back-off) and watches from there.
async fn follow(
    client: Client,
    instances: watch::Sender<Instances>,
    mut records: Records,
    mut revision: i64,
) {
    loop {
        let error = watch_from(&client, &instances, &mut records, revision).await;
        tracing::warn!(%error, "etcd watch broken; serving the last known instances until etcd answers");
        let mut delay = RETRY_FIRST;
        (records, revision) = loop {
            tokio::time::sleep(delay).await;
            match list(&client).await {
                Ok(listed) => break listed,
                Err(error) => tracing::debug!(%error, "etcd still unreachable"),
            }
            delay = (delay * 2).min(RETRY_MAX);
        };
        tracing::info!(
            instances = records.len(),
            "etcd reachable again; instances listed"
        );
        publish(&instances, &records);
    }
}

/// Applies watch events after `revision` to `records`, publishing each change, until the watch
/// breaks; returns why.
async fn watch_from(
    client: &Client,
    instances: &watch::Sender<Instances>,
    records: &mut Records,
    revision: i64,
) -> RuntimeError {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = match bounded(client.clone().watch(PREFIX, Some(options))).await {
        Ok(stream) => stream,
        Err(error) => return error,
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return RuntimeError::Etcd("watch stream ended".into()),
            Err(error) => return RuntimeError::Etcd(error.to_string()),
        };
        if response.canceled() || response.compact_revision() > 0 {
            return RuntimeError::Etcd(format!(
                "watch cancelled (compacted at {}): {}",
                response.compact_revision(),
                response.cancel_reason()
            ));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            // A deletion has no value to decode; a malformed put drops the key's old record.
            let put = match event.event_type() {
                EventType::Put => decode(kv),
                EventType::Delete => None,
            };
            match put {
                Some((key, record)) => {
                    records.insert(key, record);
                }
                None => {
                    records.remove(kv.key());
                }
            }
        }
        publish(instances, records);
    }
}

/// Sends a snapshot if it differs from the current one (a re-put of the same record is no change).
fn publish(instances: &watch::Sender<Instances>, records: &Records) {
    let next = snapshot(records);
    instances.send_if_modified(|current| {
        let changed = **current != *next;
        if changed {
            *current = next;
        }
        changed
    });
}
