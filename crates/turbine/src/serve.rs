//! `turbine serve`: discovery, request plane, workers and the HTTP frontend in one process; and
//! the two halves of a split deployment, `turbine worker` and `turbine frontend`, which find each
//! other through etcd, exchange KV events over NATS and requests over the network request plane.

use crate::cli::{EngineKind, LoadFormat, ServeArgs};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use turbine_engine::core::EngineCore;
use turbine_engine::executor::Executor;
use turbine_engine::executor::cpu::config::ModelConfig;
use turbine_engine::executor::cpu::kv_cache::bytes_per_block;
use turbine_engine::executor::cpu::{CpuExecutor, Model};
use turbine_engine::executor::cuda::{CudaExecutor, CudaOptions, WeightSource};
use turbine_engine::executor::mock::MockExecutor;
use turbine_engine::worker::WorkerOptions;
use turbine_engine::{EchoEngine, Worker, WorkerMetrics};
use turbine_frontend::{AppState, FrontendConfig};
use turbine_protocols::{InstanceId, InstanceRecord, ModelCard, WorkerRole};
use turbine_runtime::{
    Discovery, EmbeddedDiscovery, EmbeddedEventPlane, EmbeddedRequestPlane, EventPlane, Generate,
    TcpRequestPlane, connect_discovery, connect_events, serve_request_plane, shutdown_signal,
};
use turbine_tokens::ModelTokenizer;

const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Which parts of Turbine this process runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Workers and the frontend in one process, in-process planes (`turbine serve`).
    All,
    /// Workers only, served over the network request plane (`turbine worker`).
    Worker,
    /// The HTTP frontend only, reaching workers over the network (`turbine frontend`).
    Frontend,
}

pub async fn run(args: ServeArgs, role: Role) -> anyhow::Result<()> {
    match role {
        Role::All => run_all(args).await,
        Role::Worker => run_worker(args).await,
        Role::Frontend => run_frontend(args).await,
    }
}

async fn run_all(args: ServeArgs) -> anyhow::Result<()> {
    let prometheus = prometheus::Registry::new();
    let discovery = Arc::new(EmbeddedDiscovery::default());
    let plane = Arc::new(EmbeddedRequestPlane::default());
    let events: Arc<dyn EventPlane> = Arc::new(EmbeddedEventPlane::default());
    let workers = start_workers(
        &args,
        discovery.as_ref(),
        &plane,
        events.clone(),
        &prometheus,
        1,
        "local",
    )
    .await?;
    let model = workers.card.name.clone();
    let state = AppState::new(
        frontend_config(&args)?,
        discovery.as_ref(),
        plane.clone(),
        events,
        prometheus,
    )?;
    wait_for_model(&state, &model).await?;
    serve_http(&args, state, &format!("serving {model}")).await?;
    workers
        .drain(discovery.as_ref(), &plane, Duration::ZERO)
        .await;
    Ok(())
}

/// The etcd and NATS URLs a process of a split deployment needs.
fn cluster_urls(args: &ServeArgs) -> anyhow::Result<(&str, &str)> {
    match (args.discovery.as_deref(), args.events.as_deref()) {
        (Some(discovery), Some(events)) => Ok((discovery, events)),
        _ => bail!(
            "a separate worker or frontend needs --discovery etcd://HOST:PORT and \
             --events nats://HOST:PORT (scripts/infra.sh start runs both on this machine)"
        ),
    }
}

async fn run_worker(args: ServeArgs) -> anyhow::Result<()> {
    let (discovery_url, events_url) = cluster_urls(&args)?;
    let discovery = connect_discovery(Some(discovery_url)).await?;
    let events = connect_events(Some(events_url)).await?;
    let listener = tokio::net::TcpListener::bind(args.listen.as_str())
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let host = args
        .advertise
        .clone()
        .unwrap_or_else(|| address.ip().to_string());
    let endpoint = format!("http://{host}:{}", address.port());
    let plane = Arc::new(EmbeddedRequestPlane::default());
    let prometheus = prometheus::Registry::new();
    // Instance ids must be unique across the cluster: a random base per process.
    let first_id = rand::random::<u64>() >> 16 << 16;
    let workers = start_workers(
        &args,
        discovery.as_ref(),
        &plane,
        events,
        &prometheus,
        first_id,
        &endpoint,
    )
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_request_plane(listener, plane.clone(), async {
        let _ = stop_rx.await;
    }));
    println!(
        "turbine: worker serving {} at {endpoint} ({} instances)",
        workers.card.name,
        workers.ids.len()
    );
    shutdown_signal().await;
    tracing::info!("shutting down: leaving discovery, finishing the requests in flight");
    workers
        .drain(
            discovery.as_ref(),
            &plane,
            Duration::from_secs(args.shutdown_timeout_secs),
        )
        .await;
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(())
}

async fn run_frontend(args: ServeArgs) -> anyhow::Result<()> {
    let (discovery_url, events_url) = cluster_urls(&args)?;
    let discovery = connect_discovery(Some(discovery_url)).await?;
    let events = connect_events(Some(events_url)).await?;
    let state = AppState::new(
        frontend_config(&args)?,
        discovery.as_ref(),
        Arc::new(TcpRequestPlane::default()),
        events,
        prometheus::Registry::new(),
    )?;
    serve_http(&args, state, "frontend").await
}

/// Serves the HTTP frontend until a signal, then drains it within the shutdown timeout.
async fn serve_http(args: &ServeArgs, state: Arc<AppState>, what: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    println!("turbine: {what} at http://{address}/v1");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(turbine_frontend::serve(listener, state, async {
        let _ = stop_rx.await;
    }));
    tokio::select! {
        result = &mut server => return result.context("server task failed")?.context("server failed"),
        _ = shutdown_signal() => {}
    }
    tracing::info!(
        timeout_secs = args.shutdown_timeout_secs,
        "shutting down: no new requests, draining in-flight ones"
    );
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(args.shutdown_timeout_secs), &mut server).await {
        Ok(result) => result
            .context("server task failed")?
            .context("server failed")?,
        Err(_) => tracing::warn!("drain deadline passed with requests in flight; stopping them"),
    }
    Ok(())
}

/// The workers of this process, served on `plane` and registered in discovery.
struct Workers {
    card: ModelCard,
    ids: Vec<InstanceId>,
    engines: Vec<Arc<Worker>>,
    /// Requests each worker holds, to drain before stopping.
    active: Vec<prometheus::IntGauge>,
}

/// Starts `--workers` engines, serves them on `plane` and registers them with `endpoint`.
async fn start_workers(
    args: &ServeArgs,
    discovery: &dyn Discovery,
    plane: &EmbeddedRequestPlane,
    events: Arc<dyn EventPlane>,
    prometheus: &prometheus::Registry,
    first_id: u64,
    endpoint: &str,
) -> anyhow::Result<Workers> {
    let model_path = model_path(args.model.as_deref())?;
    let card = model_card(args, &model_path).await?;
    let worker_metrics = WorkerMetrics::register(prometheus)?;
    let profile = args.engine_args.profile()?;
    let model = match args.engine {
        EngineKind::Cpu => Some(load_model(&model_path).await?),
        _ => None,
    };
    let cuda_weights = match args.engine {
        EngineKind::Cuda => Some(match args.load_format {
            LoadFormat::Auto => WeightSource::Loaded(load_model(&model_path).await?),
            LoadFormat::Dummy => weight_source(&model_path, LoadFormat::Dummy)?,
        }),
        _ => None,
    };

    let mut workers = Workers {
        card: card.clone(),
        ids: Vec::new(),
        engines: Vec::new(),
        active: Vec::new(),
    };
    for i in 0..args.workers.max(1) {
        let id = InstanceId(first_id + u64::from(i));
        let metrics = worker_metrics.for_worker(id);
        workers.active.push(metrics.active.clone());
        let engine: Arc<dyn Generate> = match args.engine {
            EngineKind::Echo => Arc::new(EchoEngine::new(
                Duration::from_secs_f64(args.echo_delay_ms.max(0.0) / 1000.0),
                metrics,
            )),
            EngineKind::Mock | EngineKind::Cpu | EngineKind::Cuda => {
                let mut config = args.engine_args.config(card.context_length as usize);
                let executor: Box<dyn Executor> = match (&model, &cuda_weights) {
                    (_, Some(weights)) => {
                        let options = CudaOptions {
                            device: i as usize,
                            gpu_memory_utilization: args.gpu_memory_utilization,
                            block_size: config.block_size,
                            num_blocks: args.engine_args.num_blocks,
                            max_batch_tokens: config.max_num_batched_tokens,
                            max_seqs: config.max_num_seqs,
                            graph_max_batch: args.graphs.max_batch(),
                            max_context: config.max_model_len,
                        };
                        let weights = weights.clone();
                        let executor = tokio::task::spawn_blocking(move || {
                            CudaExecutor::new(weights, &options)
                        })
                        .await??;
                        config.num_blocks = executor.num_blocks();
                        Box::new(executor)
                    }
                    (Some(model), None) => {
                        let c = &model.config;
                        let per_block = bytes_per_block(
                            c.layers,
                            config.block_size,
                            c.kv_heads,
                            c.head_dim,
                            model.kv_type,
                        );
                        let budget = (args.kv_cache_gib.max(0.0) * (1u64 << 30) as f64) as usize;
                        let fits = budget / per_block.max(1);
                        config.num_blocks = args
                            .engine_args
                            .num_blocks
                            .unwrap_or(fits.max(config.max_model_len.div_ceil(config.block_size)));
                        Box::new(CpuExecutor::new(
                            model.clone(),
                            config.num_blocks,
                            config.block_size,
                        ))
                    }
                    (None, None) => Box::new(MockExecutor::new(profile.clone())),
                };
                let core = EngineCore::new(config, executor, id, u64::from(i))
                    .map_err(|e| anyhow::anyhow!("invalid engine configuration: {e}"))?;
                let options = WorkerOptions {
                    speedup: args.speedup,
                    ..Default::default()
                };
                let worker = Worker::spawn(id, core, events.clone(), metrics, options)?;
                workers.engines.push(worker.clone());
                worker
            }
        };
        plane.serve(id, engine);
        discovery
            .register(InstanceRecord {
                id,
                role: WorkerRole::Aggregated,
                endpoint: endpoint.to_string(),
                model: card.clone(),
            })
            .await?;
        workers.ids.push(id);
    }
    Ok(workers)
}

impl Workers {
    /// Leaves discovery, lets the requests in flight finish (up to `timeout`), then stops.
    async fn drain(
        self,
        discovery: &dyn Discovery,
        plane: &EmbeddedRequestPlane,
        timeout: Duration,
    ) {
        for &id in &self.ids {
            if let Err(err) = discovery.deregister(id).await {
                tracing::warn!(worker = %id, "cannot deregister: {err}");
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while self.active.iter().any(|a| a.get() > 0) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.active.iter().any(|a| a.get() > 0) {
            tracing::warn!("drain deadline passed with requests in flight; stopping them");
        }
        for id in self.ids {
            plane.remove(id);
        }
        for worker in self.engines {
            worker.stop();
        }
    }
}

/// Loads the model's weights for the CPU engine (blocking work, off the async threads).
async fn load_model(path: &Path) -> anyhow::Result<Arc<Model>> {
    let path = path.to_path_buf();
    let started = std::time::Instant::now();
    let model = tokio::task::spawn_blocking(move || Model::load(&path))
        .await?
        .map_err(anyhow::Error::msg)?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, config = ?model.config, "model loaded");
    Ok(Arc::new(model))
}

/// The CUDA executor's weights: the model's own, or random ones of the shape its `config.json`
/// gives (`path` is the model directory or the config file itself).
pub fn weight_source(path: &Path, format: LoadFormat) -> anyhow::Result<WeightSource> {
    Ok(match format {
        LoadFormat::Auto => {
            WeightSource::Loaded(Arc::new(Model::load(path).map_err(anyhow::Error::msg)?))
        }
        LoadFormat::Dummy => {
            let file = if path.is_dir() {
                path.join("config.json")
            } else {
                path.to_path_buf()
            };
            WeightSource::Dummy(ModelConfig::from_hf_file(&file).map_err(anyhow::Error::msg)?)
        }
    })
}

fn model_path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.exists() {
            bail!("the model {} does not exist", path.display());
        }
        return Ok(path.to_path_buf());
    }
    let path = turbine_tokens::cache_dir()
        .join("models")
        .join(DEFAULT_MODEL_FILE);
    if !path.exists() {
        bail!(
            "the default model is not downloaded yet: run `scripts/fixtures.sh model` (it fetches {DEFAULT_MODEL_FILE} \
             into {}), or pass --model PATH",
            path.parent()
                .map_or_else(String::new, |p| p.display().to_string())
        );
    }
    Ok(path)
}

async fn model_card(args: &ServeArgs, path: &Path) -> anyhow::Result<ModelCard> {
    let loaded = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || ModelTokenizer::load(&path)).await?
    }
    .with_context(|| format!("cannot load the model at {}", path.display()))?;
    let context_length = args
        .context_length
        .or(loaded.context_length)
        .context("the model does not say its context length; pass --context-length")?;
    let name = match &args.model_name {
        Some(name) => name.clone(),
        None => default_model_name(path),
    };
    Ok(ModelCard {
        name,
        source: path.display().to_string(),
        context_length,
        block_size: args.engine_args.block_size,
    })
}

/// `SmolLM2-135M-Instruct.Q4_1.gguf` is served as `SmolLM2-135M-Instruct`.
fn default_model_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match file.split_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => file,
    }
}

fn frontend_config(args: &ServeArgs) -> anyhow::Result<FrontendConfig> {
    let mut api_keys = args.api_key.clone();
    if let Some(file) = &args.api_key_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        api_keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(FrontendConfig {
        max_body_bytes: args.max_body_bytes,
        max_prompt_tokens: args.max_prompt_tokens,
        max_tokens_limit: args.max_tokens_limit,
        max_concurrent_requests: args.max_concurrent_requests,
        max_queued_requests: args.max_queued_requests,
        api_keys,
        retry_after_secs: 1,
        router: args.router.config()?,
    })
}

/// The frontend loads the model's tokenizer when discovery announces it; serve only once it has.
async fn wait_for_model(state: &AppState, name: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if state.registry.get(name).is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the frontend could not load the model `{name}` within 60 s (see the log above)")
}
