//! Requests survive the loss of their worker: a frontend and three mock workers, each worker
//! behind its own network request plane server (as separate processes would be), 60 streaming
//! requests, and one worker stopped mid-run. Every request must complete with exactly its
//! `max_tokens` tokens, with no error and the text of one continuous stream.

mod common;

use common::{all, stream};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use turbine_engine::EngineConfig;
use turbine_engine::core::EngineCore;
use turbine_engine::executor::mock::MockExecutor;
use turbine_engine::executor::timing::TimingProfile;
use turbine_engine::worker::WorkerOptions;
use turbine_engine::{Worker, WorkerMetrics};
use turbine_frontend::{AppState, FrontendConfig};
use turbine_protocols::{InstanceId, InstanceRecord, ModelCard, WorkerRole};
use turbine_runtime::{
    Discovery, EmbeddedDiscovery, EmbeddedEventPlane, EmbeddedRequestPlane, EventPlane,
    TcpRequestPlane, serve_request_plane,
};

const MAX_TOKENS: u64 = 96;

/// A mock worker served on its own loopback port.
async fn worker(
    id: InstanceId,
    events: Arc<dyn EventPlane>,
    metrics: &WorkerMetrics,
) -> (Arc<Worker>, String) {
    let config = EngineConfig {
        max_model_len: 4096,
        ..Default::default()
    };
    let core = EngineCore::new(
        config,
        Box::new(MockExecutor::new(TimingProfile::default())),
        id,
        id.0,
    )
    .expect("engine");
    let options = WorkerOptions {
        speedup: 1.0,
        ..Default::default()
    };
    let worker = Worker::spawn(id, core, events, metrics.for_worker(id), options).expect("worker");
    let plane = Arc::new(EmbeddedRequestPlane::default());
    plane.serve(id, worker.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(serve_request_plane(listener, plane, std::future::pending()));
    (worker, endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_move_to_another_worker_when_theirs_is_lost() {
    let model_path = turbine_tokens::cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model_path.exists(),
        "{} is missing: run scripts/fixtures.sh model",
        model_path.display()
    );
    let card = ModelCard {
        name: "m".into(),
        source: model_path.display().to_string(),
        context_length: 4096,
        block_size: 16,
    };
    let prometheus = prometheus::Registry::new();
    let metrics = WorkerMetrics::register(&prometheus).expect("metrics");
    let events: Arc<dyn EventPlane> = Arc::new(EmbeddedEventPlane::default());
    let discovery = EmbeddedDiscovery::default();
    let mut workers = Vec::new();
    for i in 1..=3 {
        let id = InstanceId(i);
        let (worker, endpoint) = worker(id, events.clone(), &metrics).await;
        discovery
            .register(InstanceRecord {
                id,
                role: WorkerRole::Aggregated,
                endpoint,
                model: card.clone(),
            })
            .await
            .expect("register");
        workers.push(worker);
    }
    let state = AppState::new(
        FrontendConfig {
            router: turbine_router::RouterConfig {
                policy: turbine_router::RoutingPolicy::RoundRobin,
                ..Default::default()
            },
            ..Default::default()
        },
        &discovery,
        Arc::new(TcpRequestPlane::default()),
        events,
        prometheus,
    )
    .expect("state");
    for _ in 0..200 {
        if state.registry.get("m").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(turbine_frontend::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));

    let requests = all((0..60u32).map(|i| async move {
        let mut c = turbine_bench::Connection::open(address)
            .await
            .expect("connect");
        let prompt: Vec<u32> = (0..40).map(|t| 1000 + i * 64 + t).collect();
        let body = json!({
            "model": "m", "prompt": prompt, "max_tokens": MAX_TOKENS, "stream": true,
            "ignore_eos": true, "stream_options": {"include_usage": true}
        });
        stream(&mut c, "/v1/completions", &body).await
    }));
    let kill = async {
        // Let every request get going, then lose worker 2 mid-stream.
        tokio::time::sleep(Duration::from_millis(200)).await;
        workers[1].stop();
    };
    let (results, ()) = tokio::join!(requests, kill);

    for streamed in &results {
        assert!(streamed.done, "stream ended without [DONE]");
        let errors: Vec<_> = streamed
            .events
            .iter()
            .filter(|e| e.get("error").is_some())
            .collect();
        assert!(errors.is_empty(), "error frames: {errors:?}");
        let usage = streamed
            .events
            .iter()
            .find_map(|e| e.get("usage").filter(|u| !u.is_null()))
            .expect("usage");
        assert_eq!(usage["completion_tokens"], MAX_TOKENS);
        assert_eq!(streamed.finish_reason().as_deref(), Some("length"));
    }
    let moved = state
        .prometheus
        .gather()
        .iter()
        .find(|f| f.name() == "turbine_frontend_migrations_total")
        .map(|f| {
            f.get_metric()
                .iter()
                .map(|m| m.get_counter().get_value())
                .sum::<f64>()
        })
        .unwrap_or(0.0);
    assert!(moved >= 1.0, "no request was migrated");
}
