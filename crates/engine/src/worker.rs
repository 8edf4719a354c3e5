//! A worker: an [`EngineCore`] on its own thread, served on the request plane through
//! [`Generate`]. The thread admits new requests between steps, drops requests whose client went
//! away, streams each step's tokens out, publishes KV events and load reports on the event plane,
//! and keeps the `turbine_worker_*` metrics.
//!
//! With the mock executor the thread also waits out each step's simulated duration (divided by
//! `speedup`), so a mock worker serves in real time what a GPU would.

use crate::core::{EngineCore, StepReport};
use crate::metrics::WorkerHandles;
use crate::scheduler::SeqId;
use futures::StreamExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use turbine_protocols::{
    EngineOutput, FinishReason, InstanceId, KvReplay, LoadReport, PreprocessedRequest,
};
use turbine_runtime::{EngineStream, EventPlane, Generate, RuntimeError};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Mock executor: simulated time runs this many times faster than real time.
    pub speedup: f64,
    /// Load reports go out on every change, and at least this often.
    pub load_interval: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            speedup: 1.0,
            load_interval: Duration::from_secs(1),
        }
    }
}

type OutputSender = UnboundedSender<Result<EngineOutput, RuntimeError>>;

enum Command {
    Generate {
        request: PreprocessedRequest,
        cancel: CancellationToken,
        output: OutputSender,
    },
    KvCatchUp {
        after_id: u64,
        reply: tokio::sync::oneshot::Sender<KvReplay>,
    },
    Stop,
}

pub struct Worker {
    commands: Mutex<Sender<Command>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    pub fn spawn(
        id: InstanceId,
        core: EngineCore,
        events: Arc<dyn EventPlane>,
        metrics: WorkerHandles,
        options: WorkerOptions,
    ) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = channel();
        metrics
            .kv_blocks_total
            .set(core.scheduler().blocks.num_blocks() as i64);
        let mut engine = EngineThread {
            id,
            core,
            events,
            metrics,
            options,
            active: HashMap::new(),
            last_load: None,
            last_load_at: Instant::now(),
            prefix_counts: (0, 0),
            preemptions: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("engine-{id}"))
            .spawn(move || engine.run(rx))?;
        Ok(Arc::new(Self {
            commands: Mutex::new(tx),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Stops the engine thread; requests still running end without a finish reason.
    pub fn stop(&self) {
        let _ = self.commands.lock().send(Command::Stop);
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Generate for Worker {
    fn generate(&self, request: PreprocessedRequest, cancel: CancellationToken) -> EngineStream {
        let (output, rx) = unbounded_channel();
        let command = Command::Generate {
            request,
            cancel,
            output,
        };
        if self.commands.lock().send(command).is_err() {
            let error = RuntimeError::Disconnected("the worker has stopped".into());
            return futures::stream::once(async move { Err(error) }).boxed();
        }
        UnboundedReceiverStream::new(rx).boxed()
    }

    fn kv_catch_up(&self, after_id: u64) -> BoxFuture<'static, Result<KvReplay, RuntimeError>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self
            .commands
            .lock()
            .send(Command::KvCatchUp { after_id, reply });
        Box::pin(async move {
            if sent.is_err() {
                return Err(RuntimeError::Disconnected("the worker has stopped".into()));
            }
            answer
                .await
                .map_err(|_| RuntimeError::Disconnected("the worker has stopped".into()))
        })
    }
}

struct Active {
    cancel: CancellationToken,
    output: OutputSender,
}

struct EngineThread {
    id: InstanceId,
    core: EngineCore,
    events: Arc<dyn EventPlane>,
    metrics: WorkerHandles,
    options: WorkerOptions,
    active: HashMap<SeqId, Active>,
    last_load: Option<LoadReport>,
    last_load_at: Instant,
    prefix_counts: (u64, u64),
    preemptions: u64,
}

impl EngineThread {
    fn run(&mut self, commands: Receiver<Command>) {
        loop {
            if !self.receive(&commands) {
                return;
            }
            self.drop_cancelled();
            if self.core.has_work() {
                let started = Instant::now();
                match self.core.step() {
                    Ok(report) => {
                        // A simulated step's tokens exist only once its time has passed.
                        self.wait_out(&report, started);
                        self.deliver(&report);
                        self.record_step(&report, started);
                    }
                    Err(err) => self.fail_all(&err.to_string()),
                }
            }
            self.publish_kv_events();
            self.report_load();
        }
    }

    /// Takes new commands: waits for one when idle, else only takes what is there. False on stop.
    fn receive(&mut self, commands: &Receiver<Command>) -> bool {
        if !self.core.has_work() {
            match commands.recv_timeout(self.options.load_interval) {
                Ok(command) => {
                    if !self.handle(command) {
                        return false;
                    }
                }
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        loop {
            match commands.try_recv() {
                Ok(command) => {
                    if !self.handle(command) {
                        return false;
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => return true,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Stop => false,
            Command::KvCatchUp { after_id, reply } => {
                // Publish what is pending first, so the answer never runs ahead of the plane.
                self.publish_kv_events();
                let _ = reply.send(self.core.kv_catch_up(after_id));
                true
            }
            Command::Generate {
                request,
                cancel,
                output,
            } => {
                let (seq, done) = self.core.add_request(request);
                match done {
                    Some(output_now) => {
                        let failed =
                            matches!(output_now.finish_reason, Some(FinishReason::Error(_)));
                        let _ = output.send(Ok(output_now));
                        if failed {
                            &self.metrics.failed
                        } else {
                            &self.metrics.finished
                        }
                        .inc();
                    }
                    None => {
                        self.metrics.active.inc();
                        self.active.insert(seq, Active { cancel, output });
                    }
                }
                true
            }
        }
    }

    fn publish_kv_events(&mut self) {
        for event in self.core.take_kv_events() {
            self.events.publish_kv(event);
        }
    }

    fn drop_cancelled(&mut self) {
        let gone: Vec<SeqId> = self
            .active
            .iter()
            .filter(|(_, a)| a.cancel.is_cancelled() || a.output.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.core.abort(id);
            self.active.remove(&id);
            self.metrics.active.dec();
            self.metrics.cancelled.inc();
        }
    }

    fn deliver(&mut self, report: &StepReport) {
        for out in &report.outputs {
            if out.output.finish_reason.is_none() {
                if let Some(active) = self.active.get(&out.seq) {
                    let _ = active.output.send(Ok(out.output.clone()));
                }
                continue;
            }
            // Counted before the last output goes out: whoever sees the end sees it counted.
            if let Some(active) = self.active.remove(&out.seq) {
                self.metrics.active.dec();
                self.metrics.finished.inc();
                let _ = active.output.send(Ok(out.output.clone()));
            }
        }
    }

    fn fail_all(&mut self, message: &str) {
        tracing::error!(worker = %self.id, "engine step failed: {message}");
        for (id, active) in self.active.drain() {
            self.core.abort(id);
            let _ = active
                .output
                .send(Err(RuntimeError::Engine(message.to_string())));
            self.metrics.active.dec();
            self.metrics.failed.inc();
        }
    }

    fn record_step(&mut self, report: &StepReport, started: Instant) {
        let m = &self.metrics;
        if report.batch_size > 0 {
            m.batch_size.observe(report.batch_size as f64);
            m.batch_tokens.observe(report.batch_tokens as f64);
            let duration = report.simulated.unwrap_or_else(|| started.elapsed());
            m.step_seconds.observe(duration.as_secs_f64());
        }
        let scheduler = self.core.scheduler();
        let (queried, hits) = (scheduler.prefix_queried_tokens, scheduler.prefix_hit_tokens);
        m.prefix_queried_tokens
            .inc_by(queried - self.prefix_counts.0);
        m.prefix_hit_tokens.inc_by(hits - self.prefix_counts.1);
        self.prefix_counts = (queried, hits);
        m.preemptions
            .inc_by(scheduler.preemptions - self.preemptions);
        self.preemptions = scheduler.preemptions;
    }

    /// Real-time mode for simulated steps: the step ends `simulated / speedup` after it started.
    fn wait_out(&self, report: &StepReport, started: Instant) {
        if let Some(simulated) = report.simulated {
            let speedup = if self.options.speedup > 0.0 {
                self.options.speedup
            } else {
                1.0
            };
            let target = simulated.div_f64(speedup);
            if let Some(rest) = target.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }

    fn report_load(&mut self) {
        let mut load = self.core.load();
        load.worker_id = Some(self.id);
        let m = &self.metrics;
        m.waiting.set(load.waiting_requests as i64);
        m.running.set(load.running_requests as i64);
        m.kv_usage
            .set(load.active_blocks as f64 / load.total_blocks.max(1) as f64);
        let changed = self.last_load.as_ref() != Some(&load);
        if changed || self.last_load_at.elapsed() >= self.options.load_interval {
            self.events.publish_load(load.clone());
            self.last_load = Some(load);
            self.last_load_at = Instant::now();
        }
    }
}
