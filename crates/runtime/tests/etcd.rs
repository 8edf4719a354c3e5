//! `EtcdDiscovery` against a real etcd: registration seen from another process's watch, lease
//! expiry, etcd restarts (with and without its data), malformed records.

mod common;

use common::{Service, eventually};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use turbine_protocols::{InstanceId, InstanceRecord, ModelCard, WorkerRole};
use turbine_runtime::{Discovery, EtcdDiscovery, Instances, RuntimeError};

const STARTUP: Duration = Duration::from_secs(30);
const CHANGE: Duration = Duration::from_secs(5);

fn record(id: u64) -> InstanceRecord {
    InstanceRecord {
        id: InstanceId(id),
        role: WorkerRole::Aggregated,
        endpoint: format!("tcp://127.0.0.1:{id}"),
        model: ModelCard {
            name: "m".into(),
            source: "s".into(),
            context_length: 8,
            block_size: 4,
        },
    }
}

/// Connects once etcd serves (it listens before it has elected itself leader).
async fn connect(etcd: &Service) -> EtcdDiscovery {
    let url = etcd.url("etcd");
    eventually("etcd serves", STARTUP, || async {
        EtcdDiscovery::connect(&url).await.ok()
    })
    .await
}

/// Waits until the watched snapshot satisfies `done`.
async fn until(
    what: &str,
    deadline: Duration,
    watch: &mut watch::Receiver<Instances>,
    done: impl Fn(&Instances) -> bool,
) {
    tokio::time::timeout(deadline, watch.wait_for(|instances| done(instances)))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {deadline:?}"))
        .expect("discovery alive");
}

/// A worker process that registered `ids`, a frontend process, and its watch once it sees them.
async fn worker_and_frontend(
    etcd: &Service,
    ids: &[u64],
) -> (EtcdDiscovery, EtcdDiscovery, watch::Receiver<Instances>) {
    let worker = connect(etcd).await;
    let frontend = connect(etcd).await;
    let mut watch = frontend.watch();
    for &id in ids {
        worker.register(record(id)).await.expect("register");
    }
    until("registered", CHANGE, &mut watch, |set| {
        set.len() == ids.len()
    })
    .await;
    (worker, frontend, watch)
}

#[tokio::test]
async fn registration_is_seen_by_another_process() {
    let etcd = Service::etcd();
    let worker = connect(&etcd).await;
    let frontend = connect(&etcd).await;
    let mut watch = frontend.watch();
    assert!(watch.borrow().is_empty());

    worker.register(record(1)).await.expect("register");
    until("registered", CHANGE, &mut watch, |set| {
        set.get(&InstanceId(1)) == Some(&record(1))
    })
    .await;
    assert!(matches!(
        worker.register(record(1)).await,
        Err(RuntimeError::AlreadyRegistered(_))
    ));

    // A frontend that starts later lists what is there.
    assert_eq!(connect(&etcd).await.watch().borrow().len(), 1);

    worker.deregister(InstanceId(1)).await.expect("deregister");
    until("deregistered", CHANGE, &mut watch, |set| set.is_empty()).await;
    assert!(matches!(
        worker.deregister(InstanceId(1)).await,
        Err(RuntimeError::NotRegistered(_))
    ));
}

#[tokio::test]
async fn records_of_a_dead_process_expire_with_its_lease() {
    let etcd = Service::etcd();
    let (worker, _frontend, mut watch) = worker_and_frontend(&etcd, &[1, 2]).await;

    // Renewal stops, as when the process is killed.
    drop(worker);
    let start = Instant::now();
    until("expired", Duration::from_secs(8), &mut watch, |set| {
        set.is_empty()
    })
    .await;
    eprintln!(
        "records expired {:?} after renewal stopped",
        start.elapsed()
    );
}

#[tokio::test]
async fn survives_an_etcd_restart_that_lost_its_data() {
    let mut etcd = Service::etcd();
    let (worker, _frontend, mut watch) = worker_and_frontend(&etcd, &[1]).await;

    etcd.kill();
    std::fs::remove_dir_all(etcd.dir.join("data")).expect("wipe etcd's data");
    // Longer than the lease TTL: the frontend keeps serving the instances it knows.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(watch.borrow().len(), 1, "the last snapshot is kept");
    assert!(matches!(
        worker.register(record(2)).await,
        Err(RuntimeError::Etcd(_))
    ));

    etcd.restart();
    // The new etcd knows nothing: the worker puts its record back under a new lease, and both
    // the old watcher and a new process see it.
    let fresh = connect(&etcd).await;
    let mut fresh_watch = fresh.watch();
    until("re-registered", STARTUP, &mut fresh_watch, |set| {
        set.get(&InstanceId(1)) == Some(&record(1))
    })
    .await;
    worker
        .register(record(2))
        .await
        .expect("register after restart");
    until("old watcher follows again", CHANGE, &mut watch, |set| {
        set.len() == 2
    })
    .await;
}

#[tokio::test]
async fn deregistering_while_etcd_is_down_takes_effect_when_it_returns() {
    let mut etcd = Service::etcd();
    let (worker, _frontend, mut watch) = worker_and_frontend(&etcd, &[1, 2]).await;

    etcd.kill();
    worker.deregister(InstanceId(1)).await.expect("deregister");
    etcd.restart();
    // etcd kept its data: record 1 expires with the lease nobody renews any more, record 2 lives
    // on under the worker's new lease.
    until("only the registered one", STARTUP, &mut watch, |set| {
        set.keys().eq([&InstanceId(2)])
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(watch.borrow().keys().eq([&InstanceId(2)]));
}

#[tokio::test]
async fn malformed_records_are_skipped() {
    let etcd = Service::etcd();
    let frontend = connect(&etcd).await;
    let mut watch = frontend.watch();
    let mut raw = etcd_client::Client::connect([format!("127.0.0.1:{}", etcd.port)], None)
        .await
        .expect("raw client");
    raw.put("/turbine/instances/garbage", "{\"id\": 1, trunc", None)
        .await
        .expect("put garbage");
    frontend.register(record(3)).await.expect("register");
    until("registered", CHANGE, &mut watch, |set| set.len() == 1).await;
    // A process that lists the prefix skips it too.
    assert_eq!(connect(&etcd).await.watch().borrow().len(), 1);
}

#[tokio::test]
async fn unreachable_or_malformed_addresses_fail_clearly() {
    let port = common::free_port();
    let start = Instant::now();
    let result = EtcdDiscovery::connect(&format!("etcd://127.0.0.1:{port}")).await;
    assert!(matches!(result, Err(RuntimeError::Etcd(_))));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        EtcdDiscovery::connect("127.0.0.1:2379").await,
        Err(RuntimeError::InvalidAddress(_))
    ));
}
