//! `turbine sim`: a workload replayed in virtual time through the real router and real engine
//! cores (scheduler, block manager, prefix cache) with the mock executor's step timing. No
//! threads, sleeps or HTTP: a discrete-event loop jumps from one event to the next, so an hour of
//! trace on 16 workers takes seconds.
//!
//! Events: a request arrives (its scheduled time, a closed-loop slot freeing, or its parent turn
//! finishing plus think time) and is routed at once; a worker's step ends. A worker that has
//! work runs `EngineCore::step` the moment it is free; the step's outputs, KV events and load
//! report take effect when its simulated duration has passed, as they would on a GPU.
//!
//! Not simulated: HTTP and frontend overhead, network delays of events (the router sees each
//! step's events when the step ends), and the router's admission queue (every request is routed
//! when it arrives; engines queue it).

use crate::record::{RequestError, RequestRecord};
use crate::workload::{Arrival, Workload};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use turbine_engine::EngineConfig;
use turbine_engine::core::{EngineCore, SeqOutput};
use turbine_engine::executor::mock::MockExecutor;
use turbine_engine::executor::timing::TimingProfile;
use turbine_engine::scheduler::SeqId;
use turbine_protocols::{
    FinishReason, InstanceId, PreprocessedRequest, SamplingOptions, StopConditions,
};
use turbine_router::{Ingest, KvRouter, RouteGuard, RouterConfig, RouterMetrics};
use turbine_tokens::{BLOCK_HASH_SEED, compute_block_hashes};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub workers: usize,
    pub engine: EngineConfig,
    pub profile: TimingProfile,
    pub router: RouterConfig,
    /// Most requests in flight at once (closed loop; a cap in open loop).
    pub concurrency: Option<usize>,
}

/// One worker's share of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerStats {
    pub requests: u64,
    pub prompt_tokens: u64,
    /// Prompt tokens served from the prefix cache.
    pub hit_tokens: u64,
    /// KV blocks in use, averaged over the run's simulated time.
    pub mean_active_blocks: f64,
    /// Time spent in steps over the run's simulated time.
    pub busy: f64,
}

#[derive(Debug, Clone)]
pub struct SimRun {
    pub records: Vec<RequestRecord>,
    /// From the first arrival to the last completion, in simulated time.
    pub simulated: Duration,
    pub steps: u64,
    pub workers: Vec<WorkerStats>,
    /// Prompt tokens one unbounded cache shared by all workers would have served: the ceiling
    /// of any router's hit rate.
    pub ideal_hit_tokens: u64,
    /// Prompt tokens the router expected the chosen workers to hold.
    pub predicted_hit_tokens: u64,
}

impl SimRun {
    pub fn prompt_tokens(&self) -> u64 {
        self.workers.iter().map(|w| w.prompt_tokens).sum()
    }

    pub fn hit_rate(&self) -> f64 {
        let hits: u64 = self.workers.iter().map(|w| w.hit_tokens).sum();
        hits as f64 / self.prompt_tokens().max(1) as f64
    }

    pub fn ideal_hit_rate(&self) -> f64 {
        self.ideal_hit_tokens as f64 / self.prompt_tokens().max(1) as f64
    }

    /// The busiest worker's mean KV use over the mean of all workers (1.0: perfectly even).
    pub fn load_imbalance(&self) -> f64 {
        let loads: Vec<f64> = self.workers.iter().map(|w| w.mean_active_blocks).collect();
        let mean = loads.iter().sum::<f64>() / loads.len().max(1) as f64;
        let max = loads.iter().copied().fold(0.0, f64::max);
        if mean > 0.0 { max / mean } else { 1.0 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid engine configuration: {0}")]
    Config(String),
    #[error("the simulation made no progress at {0:?} with requests still in flight")]
    Stalled(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A step of this worker ends.
    StepDone(usize),
    /// This request is due.
    Due(usize),
}

struct Flight {
    request: usize,
    sent: Duration,
    scheduled: Option<Duration>,
    first: Option<Duration>,
    last: Duration,
    itl: Vec<Duration>,
    output_tokens: u64,
    route: RouteGuard,
}

struct SimWorker {
    core: EngineCore,
    id: InstanceId,
    busy_until: Option<Duration>,
    pending: Vec<SeqOutput>,
    flights: HashMap<SeqId, Flight>,
    stats: WorkerStats,
    /// Area under active blocks × seconds, and when it was last sampled.
    block_seconds: f64,
    sampled_at: Duration,
    busy_seconds: f64,
}

struct Sim<'a> {
    workload: &'a Workload,
    router: Arc<KvRouter>,
    workers: Vec<SimWorker>,
    events: BinaryHeap<Reverse<(Duration, u64, Event)>>,
    next_event: u64,
    ready: VecDeque<(usize, Option<Duration>)>,
    in_flight: usize,
    cap: usize,
    children: HashMap<usize, Vec<usize>>,
    records: Vec<RequestRecord>,
    /// The virtual clock's origin, for the router's `Instant`s.
    origin: Instant,
    steps: u64,
    predicted_hit_tokens: u64,
}

/// Runs `workload` on `config.workers` simulated workers.
pub fn simulate(config: &SimConfig, workload: &Workload) -> Result<SimRun, SimError> {
    let router = KvRouter::new(
        config.router.clone(),
        config.engine.block_size,
        RouterMetrics::unregistered().for_model("sim"),
    );
    let mut workers = Vec::with_capacity(config.workers);
    for i in 0..config.workers.max(1) {
        let id = InstanceId(i as u64 + 1);
        let executor = Box::new(MockExecutor::new(config.profile.clone()));
        let core = EngineCore::new(config.engine.clone(), executor, id, i as u64)
            .map_err(SimError::Config)?;
        workers.push(SimWorker {
            core,
            id,
            busy_until: None,
            pending: Vec::new(),
            flights: HashMap::new(),
            stats: WorkerStats::default(),
            block_seconds: 0.0,
            sampled_at: Duration::ZERO,
            busy_seconds: 0.0,
        });
    }
    let ids: Vec<InstanceId> = workers.iter().map(|w| w.id).collect();
    router.set_workers(&ids);
    let sim = Sim {
        workload,
        router,
        workers,
        events: BinaryHeap::new(),
        next_event: 0,
        ready: VecDeque::new(),
        in_flight: 0,
        cap: config.concurrency.unwrap_or(usize::MAX).max(1),
        children: HashMap::new(),
        records: Vec::with_capacity(workload.requests.len()),
        origin: Instant::now(),
        steps: 0,
        predicted_hit_tokens: 0,
    };
    sim.run()
}

impl Sim<'_> {
    fn push(&mut self, at: Duration, event: Event) {
        self.events.push(Reverse((at, self.next_event, event)));
        self.next_event += 1;
    }

    fn run(mut self) -> Result<SimRun, SimError> {
        for request in &self.workload.requests {
            match (request.after, request.arrival) {
                (Some((parent, _)), _) => self.children.entry(parent).or_default().push(request.id),
                (None, Arrival::At(at)) => {
                    let id = request.id;
                    self.push(at, Event::Due(id));
                }
                (None, Arrival::Closed) => self.ready.push_back((request.id, None)),
            }
        }
        self.dispatch_ready(Duration::ZERO);
        self.wake_idle(Duration::ZERO);
        let mut now = Duration::ZERO;
        while let Some(Reverse((at, _, event))) = self.events.pop() {
            now = at;
            match event {
                Event::Due(request) => {
                    self.ready.push_back((request, Some(at)));
                    self.dispatch_ready(now);
                }
                Event::StepDone(w) => self.finish_step(w, now),
            }
            let instant_over = self
                .events
                .peek()
                .is_none_or(|Reverse((next, _, _))| *next > now);
            if instant_over {
                self.wake_idle(now);
            }
        }
        if self.records.len() < self.workload.requests.len() {
            return Err(SimError::Stalled(now));
        }
        let end = self
            .records
            .iter()
            .map(|r| r.sent + r.e2e)
            .max()
            .unwrap_or_default();
        let start = self
            .records
            .iter()
            .map(|r| r.sent)
            .min()
            .unwrap_or_default();
        let span = end.saturating_sub(start).as_secs_f64().max(1e-9);
        let workers = self
            .workers
            .iter_mut()
            .map(|w| {
                w.sample_blocks(end);
                WorkerStats {
                    mean_active_blocks: w.block_seconds / span,
                    busy: w.busy_seconds / span,
                    ..w.stats.clone()
                }
            })
            .collect();
        let mut records = self.records;
        records.sort_by_key(|r| r.id);
        Ok(SimRun {
            ideal_hit_tokens: ideal_hit_tokens(self.workload, self.router.block_size()),
            records,
            simulated: end.saturating_sub(start),
            steps: self.steps,
            predicted_hit_tokens: self.predicted_hit_tokens,
            workers,
        })
    }

    /// Sends ready requests while the concurrency cap allows.
    fn dispatch_ready(&mut self, now: Duration) {
        while self.in_flight < self.cap {
            let Some((id, scheduled)) = self.ready.pop_front() else {
                return;
            };
            self.dispatch(id, scheduled, now);
        }
    }

    fn dispatch(&mut self, id: usize, scheduled: Option<Duration>, now: Duration) {
        let request = &self.workload.requests[id];
        let route = match self.router.select(&request.prompt, self.origin + now, &[]) {
            Ok(route) => route,
            Err(err) => {
                self.fail(id, now, scheduled, err.to_string());
                return;
            }
        };
        let overlap = route.decision().overlap_blocks as usize * self.router.block_size();
        self.predicted_hit_tokens += overlap.min(request.prompt.len()) as u64;
        let w = self
            .workers
            .iter()
            .position(|w| w.id == route.worker())
            .expect("the router picks among the simulated workers");
        let (seq, done) = self.workers[w].core.add_request(PreprocessedRequest {
            request_id: id.to_string(),
            token_ids: request.prompt.clone(),
            sampling: SamplingOptions::default(),
            stop: StopConditions {
                max_tokens: request.max_tokens,
                stop_token_ids: Vec::new(),
            },
            priority: 0,
        });
        if let Some(output) = done {
            let reason = format!("{:?}", output.finish_reason);
            self.fail(id, now, scheduled, reason);
            return;
        }
        self.in_flight += 1;
        let worker = &mut self.workers[w];
        worker.stats.requests += 1;
        worker.flights.insert(
            seq,
            Flight {
                request: id,
                sent: now,
                scheduled,
                first: None,
                last: now,
                itl: Vec::new(),
                output_tokens: 0,
                route,
            },
        );
    }

    /// Idle workers that got requests start a step once every event of this instant is in, so
    /// requests arriving together are scheduled together.
    fn wake_idle(&mut self, now: Duration) {
        for w in 0..self.workers.len() {
            if self.workers[w].busy_until.is_none() && self.workers[w].core.has_work() {
                self.start_step(w, now);
            }
        }
    }

    fn fail(&mut self, id: usize, now: Duration, scheduled: Option<Duration>, why: String) {
        self.records.push(RequestRecord {
            id,
            sent: now,
            lag: scheduled.map(|s| now.saturating_sub(s)),
            ttft: None,
            e2e: Duration::ZERO,
            itl: Vec::new(),
            prompt_tokens: None,
            output_tokens: 0,
            error: Some(RequestError::Stream(why)),
        });
        self.release_children(id, now);
    }

    fn start_step(&mut self, w: usize, now: Duration) {
        let worker = &mut self.workers[w];
        worker.busy_until = None;
        if !worker.core.has_work() {
            return;
        }
        worker.sample_blocks(now);
        let report = match worker.core.step() {
            Ok(report) => report,
            Err(err) => panic!("the mock executor cannot fail: {err}"),
        };
        self.steps += 1;
        // A step takes at least a microsecond, so virtual time always moves on.
        let took = report
            .simulated
            .unwrap_or_default()
            .max(Duration::from_micros(1));
        worker.busy_seconds += took.as_secs_f64();
        worker.pending = report.outputs;
        worker.busy_until = Some(now + took);
        self.push(now + took, Event::StepDone(w));
    }

    fn finish_step(&mut self, w: usize, now: Duration) {
        let outputs = std::mem::take(&mut self.workers[w].pending);
        let mut finished = Vec::new();
        {
            let worker = &mut self.workers[w];
            for out in outputs {
                let Some(flight) = worker.flights.get_mut(&out.seq) else {
                    continue;
                };
                let n = out.output.token_ids.len();
                if n > 0 {
                    match flight.first {
                        None => flight.first = Some(now),
                        Some(_) => flight.itl.push(now - flight.last),
                    }
                    flight.last = now;
                    flight.output_tokens += n as u64;
                    flight.route.generated(n);
                }
                if let Some(cached) = out.output.cached_tokens {
                    worker.stats.hit_tokens += u64::from(cached);
                }
                if let Some(reason) = out.output.finish_reason
                    && let Some(flight) = worker.flights.remove(&out.seq)
                {
                    finished.push((flight, reason));
                }
            }
        }
        for (flight, reason) in finished {
            self.complete(w, flight, reason, now);
        }
        self.publish(w, now);
        self.start_step(w, now);
        self.dispatch_ready(now);
    }

    fn complete(&mut self, w: usize, flight: Flight, reason: FinishReason, now: Duration) {
        self.in_flight -= 1;
        let prompt_tokens = self.workload.requests[flight.request].prompt.len() as u64;
        self.workers[w].stats.prompt_tokens += prompt_tokens;
        let error = match reason {
            FinishReason::Stop | FinishReason::Length => None,
            other => Some(RequestError::Stream(format!("{other:?}"))),
        };
        self.records.push(RequestRecord {
            id: flight.request,
            sent: flight.sent,
            lag: flight.scheduled.map(|s| flight.sent.saturating_sub(s)),
            ttft: flight.first.map(|f| f - flight.sent),
            e2e: now - flight.sent,
            itl: flight.itl,
            prompt_tokens: Some(prompt_tokens),
            output_tokens: flight.output_tokens,
            error,
        });
        self.release_children(flight.request, now);
    }

    fn release_children(&mut self, parent: usize, now: Duration) {
        for child in self.children.remove(&parent).unwrap_or_default() {
            let think = self.workload.requests[child]
                .after
                .map_or(Duration::ZERO, |(_, t)| t);
            self.push(now + think, Event::Due(child));
        }
    }

    /// The step's KV events and the worker's load reach the router.
    fn publish(&mut self, w: usize, now: Duration) {
        let at = self.origin + now;
        let worker = &mut self.workers[w];
        for event in worker.core.take_kv_events() {
            if let Ingest::Gap { after, .. } = self.router.apply_event(&event, at) {
                let answer = worker.core.kv_catch_up(after);
                self.router.apply_catch_up(worker.id, Ok(answer), at);
            }
        }
        let mut load = worker.core.load();
        load.worker_id = Some(worker.id);
        self.router.apply_load(&load, at);
    }
}

impl SimWorker {
    fn sample_blocks(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.sampled_at).as_secs_f64();
        self.block_seconds += dt * self.core.scheduler().blocks.num_active() as f64;
        self.sampled_at = now;
    }
}

/// Prompt tokens a single cache of unbounded size would have served, in arrival order.
fn ideal_hit_tokens(workload: &Workload, block_size: usize) -> u64 {
    let mut order: Vec<&crate::workload::WorkloadRequest> = workload.requests.iter().collect();
    order.sort_by_key(|r| match r.arrival {
        Arrival::At(at) => (at, r.id),
        Arrival::Closed => (Duration::ZERO, r.id),
    });
    let mut seen = std::collections::HashSet::new();
    let mut hits = 0u64;
    for request in order {
        let hashes = compute_block_hashes(&request.prompt, block_size, BLOCK_HASH_SEED);
        let cached = hashes
            .iter()
            .take_while(|h| seen.contains(&h.sequence))
            .count();
        // An engine computes the last prompt token itself, so it reuses whole blocks before it.
        let usable = request.prompt.len().saturating_sub(1) / block_size.max(1);
        hits += (cached.min(usable) * block_size) as u64;
        seen.extend(hashes.iter().map(|h| h.sequence));
    }
    hits
}
