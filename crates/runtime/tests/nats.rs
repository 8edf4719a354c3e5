//! `NatsEventPlane` against a real nats-server: KV events and load reports round trip between
//! processes, publishing resumes after a NATS restart, malformed messages are skipped.

mod common;

use common::{Service, eventually};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use turbine_protocols::{InstanceId, KvEvent, KvEventData, LoadReport, StorageTier, StoredBlock};
use turbine_runtime::{EventPlane, NatsEventPlane, RuntimeError};

const STARTUP: Duration = Duration::from_secs(30);
const DELIVERY: Duration = Duration::from_secs(5);

async fn connect(nats: &Service) -> NatsEventPlane {
    let url = nats.url("nats");
    eventually("nats-server serves", STARTUP, || async {
        NatsEventPlane::connect(&url).await.ok()
    })
    .await
}

fn kv_event(event_id: u64) -> KvEvent {
    let data = match event_id % 3 {
        0 => KvEventData::Stored {
            parent: Some(event_id),
            blocks: vec![StoredBlock {
                seq_hash: event_id << 8,
                local_hash: event_id,
            }],
            tier: StorageTier::Device,
        },
        1 => KvEventData::Removed {
            seq_hashes: vec![event_id, u64::MAX],
            tier: StorageTier::Host,
        },
        _ => KvEventData::Cleared,
    };
    KvEvent {
        worker_id: InstanceId(0xfeed),
        event_id,
        data,
    }
}

fn load(kv_event_id: u64) -> LoadReport {
    LoadReport {
        worker_id: Some(InstanceId(0xfeed)),
        active_blocks: 3,
        total_blocks: 100,
        waiting_requests: 1,
        running_requests: 2,
        queued_prefill_tokens: 17,
        kv_event_id,
    }
}

async fn next<T: Clone>(subscriber: &mut broadcast::Receiver<T>) -> T {
    tokio::time::timeout(DELIVERY, subscriber.recv())
        .await
        .expect("delivered in time")
        .expect("subscribed")
}

/// Publishes `event(i)` for i = 1, 2, … until the subscriber receives one (its subscription, or
/// the connection after a restart, is then live), then one more, and receives up to that one:
/// returns its id, the last event published and received.
async fn publish_until_received(
    publisher: &NatsEventPlane,
    subscriber: &mut broadcast::Receiver<KvEvent>,
    deadline: Duration,
) -> u64 {
    let start = Instant::now();
    let mut id = 0;
    loop {
        id += 1;
        publisher.publish_kv(kv_event(id));
        let wait = Duration::from_millis(200);
        if let Ok(received) = tokio::time::timeout(wait, subscriber.recv()).await {
            received.expect("subscribed");
            break;
        }
        assert!(
            start.elapsed() < deadline,
            "no event got through within {deadline:?}"
        );
    }
    let marker = kv_event(id + 1);
    publisher.publish_kv(marker.clone());
    // Skip the earlier events still on their way.
    loop {
        let event = next(subscriber).await;
        if event.event_id == marker.event_id {
            assert_eq!(event, marker);
            return marker.event_id;
        }
    }
}

#[tokio::test]
async fn events_and_load_reports_round_trip() {
    let nats = Service::nats();
    let worker = connect(&nats).await;
    let frontend = connect(&nats).await;
    let mut kv = frontend.subscribe_kv();
    let mut loads = frontend.subscribe_load();
    let warm_up = publish_until_received(&worker, &mut kv, DELIVERY).await;

    // Live now: every event arrives, in order, unchanged.
    for id in warm_up + 1..=warm_up + 100 {
        worker.publish_kv(kv_event(id));
    }
    worker.publish_load(load(warm_up + 100));
    for id in warm_up + 1..=warm_up + 100 {
        let event = next(&mut kv).await;
        assert_eq!(event, kv_event(id));
    }
    let report = next(&mut loads).await;
    assert_eq!(report, load(warm_up + 100));
}

#[tokio::test]
async fn publishing_resumes_after_a_nats_restart() {
    let mut nats = Service::nats();
    let worker = connect(&nats).await;
    let frontend = connect(&nats).await;
    let mut kv = frontend.subscribe_kv();
    publish_until_received(&worker, &mut kv, DELIVERY).await;

    nats.kill();
    // Dropped once the client has noticed the outage (before that, they may arrive late).
    for id in 1000..1010 {
        worker.publish_kv(kv_event(id));
    }
    nats.restart();
    // Both clients reconnect and the subscription is renewed on its own.
    publish_until_received(&worker, &mut kv, STARTUP).await;
}

#[tokio::test]
async fn malformed_messages_are_skipped() {
    let nats = Service::nats();
    let frontend = connect(&nats).await;
    let mut kv = frontend.subscribe_kv();
    let worker = connect(&nats).await;
    let warm_up = publish_until_received(&worker, &mut kv, DELIVERY).await;

    // From one connection, so NATS delivers them in this order.
    let raw = async_nats::connect(nats.url("nats"))
        .await
        .expect("raw client");
    let valid = serde_json::to_vec(&kv_event(warm_up + 1)).expect("serialize");
    for payload in [
        &b"not json"[..],
        b"{\"worker_id\": 1, \"event_id\"",
        b"",
        b"\xff\xfe",
        &valid,
    ] {
        raw.publish("turbine.kv.0000000000000001", payload.to_vec().into())
            .await
            .expect("publish");
    }
    raw.flush().await.expect("flush");
    let event = next(&mut kv).await;
    assert_eq!(event, kv_event(warm_up + 1));
}

#[tokio::test]
async fn unreachable_or_malformed_addresses_fail_clearly() {
    let port = common::free_port();
    assert!(matches!(
        NatsEventPlane::connect(&format!("nats://127.0.0.1:{port}")).await,
        Err(RuntimeError::Nats(_))
    ));
    assert!(matches!(
        NatsEventPlane::connect("etcd://127.0.0.1:4222").await,
        Err(RuntimeError::InvalidAddress(_))
    ));
}
