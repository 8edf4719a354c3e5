//! Engine-core tests with an executor that really stores KV in paged blocks: every token's "KV"
//! is the token id written at its slot through the block table, and every sampled distribution
//! is derived from reading the whole context back through the block table. Wrong block tables,
//! bad prefix reuse or lost KV after preemption change the outputs or fail the read-back check.

use std::collections::HashMap;
use turbine_engine::EngineConfig;
use turbine_engine::core::EngineCore;
use turbine_engine::executor::{Batch, Executor, ExecutorError, Samples, StepOutput};
use turbine_protocols::{
    FinishReason, InstanceId, PreprocessedRequest, SamplingOptions, StopConditions,
};

const VOCAB: usize = 64;

struct PagedKvExecutor {
    block_size: usize,
    slots: Vec<Option<u32>>,
}

impl PagedKvExecutor {
    fn new(config: &EngineConfig) -> Self {
        Self {
            block_size: config.block_size,
            slots: vec![None; config.num_blocks * config.block_size],
        }
    }

    fn slot(&self, table: &[u32], pos: usize) -> usize {
        table[pos / self.block_size] as usize * self.block_size + pos % self.block_size
    }
}

impl Executor for PagedKvExecutor {
    fn execute(&mut self, batch: &Batch<'_>) -> Result<StepOutput, ExecutorError> {
        let mut rows = Vec::new();
        for seq in &batch.seqs {
            for (k, &token) in seq.new_tokens.iter().enumerate() {
                let slot = self.slot(seq.block_table, seq.start + k);
                self.slots[slot] = Some(token);
            }
            if seq.sample {
                let end = seq.start + seq.new_tokens.len();
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for pos in 0..end {
                    let stored = self.slots[self.slot(seq.block_table, pos)];
                    if stored != Some(seq.all_tokens[pos]) {
                        return Err(ExecutorError::Failed(format!(
                            "KV at position {pos} holds {stored:?}, expected {}",
                            seq.all_tokens[pos]
                        )));
                    }
                    h = (h ^ u64::from(seq.all_tokens[pos])).wrapping_mul(0x100_0000_01b3);
                }
                rows.extend(
                    (0..VOCAB as u64).map(|i| {
                        ((h ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 1000) as f32 / 100.0
                    }),
                );
            }
        }
        Ok(StepOutput {
            samples: Samples::Logits {
                vocab_size: VOCAB,
                rows,
            },
            simulated: None,
        })
    }
}

struct Job {
    priority: i32,
    prompt: Vec<u32>,
    max_tokens: u32,
    sampling: SamplingOptions,
    /// Step at which the request arrives.
    arrival: usize,
}

#[derive(Debug, Default)]
struct RunStats {
    steps: usize,
    preempted: usize,
    max_batch_tokens: usize,
    max_batch_size: usize,
    cached_tokens: HashMap<usize, u32>,
    finish_step: HashMap<usize, usize>,
}

/// Runs jobs to completion; each job's generated tokens.
fn run(config: EngineConfig, jobs: &[Job]) -> (Vec<Vec<u32>>, RunStats) {
    let executor = Box::new(PagedKvExecutor::new(&config));
    let mut core = EngineCore::new(config, executor, InstanceId(1), 7).expect("valid config");
    let mut outputs = vec![Vec::new(); jobs.len()];
    let mut seq_of = HashMap::new();
    let mut stats = RunStats::default();
    let mut done = 0;
    for step in 0..100_000 {
        for (i, job) in jobs.iter().enumerate().filter(|(_, j)| j.arrival == step) {
            let request = PreprocessedRequest {
                request_id: format!("r{i}"),
                token_ids: job.prompt.clone(),
                sampling: job.sampling.clone(),
                stop: StopConditions {
                    max_tokens: job.max_tokens,
                    stop_token_ids: vec![],
                },
                priority: job.priority,
            };
            let (seq, immediate) = core.add_request(request);
            assert!(immediate.is_none(), "job {i} rejected: {immediate:?}");
            seq_of.insert(seq, i);
        }
        let report = core.step().expect("step");
        stats.steps = step + 1;
        stats.preempted += report.preempted;
        stats.max_batch_tokens = stats.max_batch_tokens.max(report.batch_tokens);
        stats.max_batch_size = stats.max_batch_size.max(report.batch_size);
        for out in report.outputs {
            let job = seq_of[&out.seq];
            outputs[job].extend(&out.output.token_ids);
            if let Some(cached) = out.output.cached_tokens {
                stats.cached_tokens.insert(job, cached);
            }
            if let Some(reason) = out.output.finish_reason {
                assert_eq!(reason, FinishReason::Length);
                stats.finish_step.insert(job, step);
                done += 1;
            }
        }
        if done == jobs.len() && jobs.iter().all(|j| j.arrival <= step) {
            assert!(!core.has_work());
            let blocks = &core.scheduler().blocks;
            assert_eq!(
                blocks.num_active(),
                0,
                "every block is free or cached once all requests ended"
            );
            blocks.check_invariants();
            return (outputs, stats);
        }
    }
    panic!("jobs did not finish in 100k steps");
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// Prompts sharing a few prefixes, so the prefix cache is exercised.
fn jobs(count: usize, seed: u64, sampling: SamplingOptions) -> Vec<Job> {
    let mut s = seed;
    let prefixes: Vec<Vec<u32>> = (0..4)
        .map(|p| {
            (0..40)
                .map(|i| (p * 100 + i) as u32 % VOCAB as u32)
                .collect()
        })
        .collect();
    (0..count)
        .map(|i| {
            let mut prompt = prefixes[(lcg(&mut s) % 4) as usize].clone();
            prompt.truncate(8 + (lcg(&mut s) % 33) as usize);
            prompt.extend((0..1 + lcg(&mut s) % 60).map(|_| (lcg(&mut s) % VOCAB as u64) as u32));
            Job {
                priority: 0,
                prompt,
                max_tokens: 1 + (lcg(&mut s) % 24) as u32,
                sampling: SamplingOptions {
                    seed: sampling.seed.map(|x| x + i as u64),
                    ..sampling.clone()
                },
                arrival: (lcg(&mut s) % 40) as usize,
            }
        })
        .collect()
}

fn greedy() -> SamplingOptions {
    SamplingOptions {
        temperature: 0.0,
        ..Default::default()
    }
}

fn config(num_blocks: usize, budget: usize, chunked: bool) -> EngineConfig {
    EngineConfig {
        num_blocks,
        block_size: 4,
        max_num_batched_tokens: budget,
        max_num_seqs: 16,
        enable_chunked_prefill: chunked,
        max_model_len: 128,
        event_replay_capacity: 100,
        policy: Default::default(),
    }
}

#[test]
fn token_budget_and_batch_size_are_respected() {
    let (_, stats) = run(config(512, 32, true), &jobs(80, 1, greedy()));
    assert!(stats.max_batch_tokens <= 32, "{stats:?}");
    assert!(
        stats.max_batch_tokens == 32,
        "the budget is used fully under load"
    );
    assert!(stats.max_batch_size <= 16);
}

#[test]
fn chunked_and_unchunked_prefill_give_identical_greedy_outputs() {
    let work = jobs(60, 2, greedy());
    let (chunked, _) = run(config(512, 16, true), &work);
    let (whole, _) = run(config(512, 256, false), &work);
    assert_eq!(chunked, whole);
}

#[test]
fn preemption_gives_identical_outputs_greedy_and_seeded() {
    for sampling in [
        greedy(),
        SamplingOptions {
            temperature: 0.9,
            top_p: 0.9,
            seed: Some(11),
            ..Default::default()
        },
    ] {
        let work = jobs(60, 3, sampling);
        let (roomy, roomy_stats) = run(config(1024, 64, true), &work);
        let (tight, tight_stats) = run(config(40, 64, true), &work);
        assert_eq!(roomy_stats.preempted, 0);
        assert!(
            tight_stats.preempted > 0,
            "the small pool forces preemption"
        );
        assert_eq!(roomy, tight);
    }
}

#[test]
fn seeded_outputs_do_not_depend_on_the_batch() {
    let sampling = SamplingOptions {
        temperature: 1.0,
        seed: Some(5),
        ..Default::default()
    };
    let work = jobs(30, 4, sampling);
    let (together, stats) = run(config(1024, 64, true), &work);
    assert!(stats.max_batch_size > 4);
    for (i, job) in work.iter().enumerate() {
        let alone = Job {
            priority: 0,
            prompt: job.prompt.clone(),
            max_tokens: job.max_tokens,
            sampling: job.sampling.clone(),
            arrival: 0,
        };
        let (out, _) = run(config(1024, 64, true), &[alone]);
        assert_eq!(out[0], together[i], "job {i}");
    }
}

#[test]
fn repeated_prompt_hits_the_prefix_cache() {
    let prompt: Vec<u32> = (0..30).map(|i| i % VOCAB as u32).collect();
    let job = |arrival| Job {
        priority: 0,
        prompt: prompt.clone(),
        max_tokens: 3,
        sampling: greedy(),
        arrival,
    };
    let (outputs, stats) = run(config(64, 64, true), &[job(0), job(20)]);
    assert_eq!(stats.cached_tokens[&0], 0);
    assert_eq!(
        stats.cached_tokens[&1], 28,
        "all full blocks but the one holding the last token"
    );
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn overload_never_starves_anyone() {
    // 200 requests arrive at once on an engine that fits a handful: FCFS admission means each
    // finishes, and no request finishes long after those that arrived with it.
    let mut work = jobs(200, 5, greedy());
    for job in &mut work {
        job.arrival = 0;
        job.max_tokens = 8;
    }
    let (outputs, stats) = run(config(48, 32, true), &work);
    assert!(outputs.iter().all(|o| o.len() == 8));
    let finish: Vec<usize> = (0..work.len()).map(|i| stats.finish_step[&i]).collect();
    for i in 0..finish.len() {
        for j in i + 20..finish.len() {
            assert!(
                finish[i] <= finish[j],
                "request {i} finished after request {j}, 20 places behind it"
            );
        }
    }
}

#[test]
fn priority_policy_serves_urgent_requests_first() {
    let mut work = jobs(40, 6, greedy());
    for (i, job) in work.iter_mut().enumerate() {
        job.arrival = 0;
        job.max_tokens = 8;
        job.priority = if i % 10 == 9 { -1 } else { 0 };
    }
    let mut priority = config(48, 32, true);
    priority.policy = turbine_engine::SchedulingPolicy::Priority;
    let (_, by_priority) = run(priority, &work);
    let (_, fcfs) = run(config(48, 32, true), &work);
    let urgent_last = |stats: &RunStats| {
        (0..work.len())
            .filter(|i| i % 10 == 9)
            .map(|i| stats.finish_step[&i])
            .max()
    };
    let others_first = |stats: &RunStats| {
        (0..work.len())
            .filter(|i| i % 10 != 9)
            .map(|i| stats.finish_step[&i])
            .min()
    };
    assert!(
        urgent_last(&by_priority) <= others_first(&by_priority).map(|s| s + 8),
        "urgent requests run first"
    );
    assert!(
        urgent_last(&fcfs) > urgent_last(&by_priority),
        "FCFS ignores priorities"
    );
}
