//! The engine core: one step = schedule, execute, sample, update. Owns the scheduler (and through
//! it the block manager), the executor and each sequence's sampler. Synchronous and
//! single-threaded: the worker drives it from a dedicated thread, the simulator from a virtual
//! clock.

use crate::config::{EngineConfig, SchedulingPolicy};
use crate::executor::{Batch, Draw, Executor, ExecutorError, Samples, SeqStep};
use crate::kv::BlockManager;
use crate::rng::Rng;
use crate::scheduler::{ScheduleOutput, Scheduler, SeqId, Sequence};
use std::time::Duration;
use turbine_protocols::{
    EngineOutput, FinishReason, InstanceId, KvEvent, KvReplay, LoadReport, PreprocessedRequest,
};

/// What one step produced for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqOutput {
    pub seq: SeqId,
    pub output: EngineOutput,
}

/// What one step did.
#[derive(Debug, Default)]
pub struct StepReport {
    pub outputs: Vec<SeqOutput>,
    /// Sequences and tokens computed.
    pub batch_size: usize,
    pub batch_tokens: usize,
    pub preempted: usize,
    /// The step's simulated duration (mock executor).
    pub simulated: Option<Duration>,
}

pub struct EngineCore {
    scheduler: Scheduler,
    executor: Box<dyn Executor>,
    next_id: SeqId,
    seeds: Rng,
}

impl EngineCore {
    pub fn new(
        config: EngineConfig,
        executor: Box<dyn Executor>,
        worker_id: InstanceId,
        seed: u64,
    ) -> Result<Self, String> {
        config.validate()?;
        let blocks = BlockManager::new(
            config.num_blocks,
            config.block_size,
            worker_id,
            config.event_replay_capacity,
        );
        Ok(Self {
            scheduler: Scheduler::new(config, blocks),
            executor,
            next_id: 1,
            seeds: Rng::new(seed),
        })
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    pub fn scheduler_mut(&mut self) -> &mut Scheduler {
        &mut self.scheduler
    }

    /// Queues a request. Requests that can never run finish at once: their output is returned.
    pub fn add_request(&mut self, request: PreprocessedRequest) -> (SeqId, Option<EngineOutput>) {
        let id = self.next_id;
        self.next_id += 1;
        let max_len = self.scheduler.config().max_model_len;
        let finished = |reason| {
            Some(EngineOutput {
                token_ids: Vec::new(),
                finish_reason: Some(reason),
                cached_tokens: Some(0),
            })
        };
        if request.token_ids.is_empty() {
            return (
                id,
                finished(FinishReason::Error("the prompt is empty".into())),
            );
        }
        if request.token_ids.len() >= max_len {
            let message = format!(
                "the prompt has {} tokens; this engine takes at most {}",
                request.token_ids.len(),
                max_len - 1
            );
            return (id, finished(FinishReason::Error(message)));
        }
        if request.stop.max_tokens == 0 {
            return (id, finished(FinishReason::Length));
        }
        let seed = self.seeds.next_u64();
        let priority = match self.scheduler.config().policy {
            SchedulingPolicy::Fcfs => 0,
            SchedulingPolicy::Priority => request.priority,
        };
        self.scheduler
            .add(Sequence::new(id, request, priority, id, seed));
        (id, None)
    }

    /// Drops a sequence (cancelled by its client) and frees its blocks.
    pub fn abort(&mut self, seq: SeqId) {
        self.scheduler.remove(seq);
    }

    pub fn has_work(&self) -> bool {
        !self.scheduler.is_idle()
    }

    pub fn step(&mut self) -> Result<StepReport, ExecutorError> {
        let schedule = self.scheduler.schedule();
        if schedule.work.is_empty() {
            return Ok(StepReport {
                preempted: schedule.preempted.len(),
                ..Default::default()
            });
        }
        // Each sampled sequence's draw (parallel to `schedule.work`), taken before the step so
        // that its random number is consumed once whoever samples.
        let draws: Vec<Option<Draw>> = schedule
            .work
            .iter()
            .map(|w| {
                let seq = self.scheduler.get_mut(w.seq).filter(|_| w.sample)?;
                seq.sampler.next_draw()
            })
            .collect();
        let batch = batch(&self.scheduler, &schedule, &draws);
        let result = self.executor.execute(&batch)?;
        drop(batch);
        for work in &schedule.work {
            self.scheduler.computed(work);
        }
        let mut report = StepReport {
            outputs: Vec::new(),
            batch_size: schedule.work.len(),
            batch_tokens: schedule.num_batched_tokens(),
            preempted: schedule.preempted.len(),
            simulated: result.simulated,
        };
        let sampled = schedule.work.iter().zip(&draws).filter(|(w, _)| w.sample);
        match result.samples {
            Samples::Tokens(tokens) => {
                for ((w, _), token) in sampled.zip(tokens) {
                    let seq = w.seq;
                    if let Some(s) = self.scheduler.get_mut(seq) {
                        s.sampler.record(token);
                    }
                    self.append(seq, token, &mut report);
                }
            }
            Samples::Logits {
                vocab_size,
                mut rows,
            } => {
                for ((w, draw), row) in sampled.zip(rows.chunks_exact_mut(vocab_size.max(1))) {
                    let Some(s) = self.scheduler.get_mut(w.seq) else {
                        continue;
                    };
                    let token = match draw {
                        Some(draw) => s.sampler.sample_drawn(row, draw),
                        None => s.sampler.sample(row),
                    };
                    self.append(w.seq, token, &mut report);
                }
            }
        }
        Ok(report)
    }

    /// Appends a sampled token and decides whether the sequence is done.
    fn append(&mut self, id: SeqId, token: u32, report: &mut StepReport) {
        let max_len = self.scheduler.config().max_model_len;
        let Some(seq) = self.scheduler.get_mut(id) else {
            return;
        };
        seq.tokens.push(token);
        let stopped = seq.stop.stop_token_ids.contains(&token);
        let finish = if stopped {
            Some(FinishReason::Stop)
        } else if seq.num_generated() >= seq.stop.max_tokens as usize || seq.tokens.len() >= max_len
        {
            Some(FinishReason::Length)
        } else {
            None
        };
        let first = seq.num_generated() == 1;
        let output = EngineOutput {
            token_ids: if stopped { Vec::new() } else { vec![token] },
            finish_reason: finish.clone(),
            cached_tokens: first.then(|| seq.cached_tokens.unwrap_or(0) as u32),
        };
        report.outputs.push(SeqOutput { seq: id, output });
        if finish.is_some() {
            self.scheduler.remove(id);
        }
    }

    pub fn take_kv_events(&mut self) -> Vec<KvEvent> {
        self.scheduler.blocks.take_events()
    }

    /// What a router that saw KV events up to `after_id` needs to catch up.
    pub fn kv_catch_up(&self, after_id: u64) -> KvReplay {
        self.scheduler.blocks.catch_up(after_id)
    }

    pub fn load(&self) -> LoadReport {
        let s = &self.scheduler;
        LoadReport {
            worker_id: None,
            active_blocks: s.blocks.num_active() as u64,
            total_blocks: s.blocks.num_blocks() as u64,
            waiting_requests: s.num_waiting() as u64,
            running_requests: s.num_running() as u64,
            queued_prefill_tokens: s.queued_prefill_tokens() as u64,
            kv_event_id: s.blocks.last_event_id(),
        }
    }
}

/// The executor's view of a schedule: token slices and block tables borrowed from the sequences.
fn batch<'a>(
    scheduler: &'a Scheduler,
    schedule: &ScheduleOutput,
    draws: &[Option<Draw>],
) -> Batch<'a> {
    Batch {
        seqs: schedule
            .work
            .iter()
            .zip(draws)
            .filter_map(|(w, draw)| {
                let seq = scheduler.get(w.seq)?;
                Some(SeqStep {
                    start: w.start,
                    new_tokens: &seq.tokens[w.start..w.start + w.num_new],
                    block_table: &seq.blocks,
                    sample: w.sample,
                    all_tokens: &seq.tokens,
                    prompt_len: seq.prompt_len,
                    draw: *draw,
                })
            })
            .collect(),
    }
}
