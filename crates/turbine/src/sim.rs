//! `turbine sim`: wires the flags to the workload and the virtual-time simulator, and prints the
//! same report as `turbine bench` plus what only a simulator sees (hit rate against its ceiling,
//! load per worker).

use crate::bench::{passes, write_outputs};
use crate::cli::SimArgs;
use std::time::Instant;
use turbine_bench::Report;
use turbine_bench::sim::{SimConfig, SimRun, simulate};

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let (_, workload) = crate::workload::build(&args.workload, false)?;
    let (workload, passes) = passes(&args.load, &args.workload, workload)?;
    let engine = args.engine_args.config(args.context_length);
    let profile = args.engine_args.profile()?;
    let router = args.router.config()?;
    eprintln!(
        "sim: {} on {} workers ({}, router {}, {} blocks of {} tokens each)",
        workload.description,
        args.workers,
        profile.name,
        router.policy,
        engine.num_blocks,
        engine.block_size
    );
    let mut runs = Vec::new();
    for pass in passes {
        let config = SimConfig {
            workers: args.workers,
            engine: engine.clone(),
            profile: profile.clone(),
            router: router.clone(),
            concurrency: pass.concurrency,
        };
        let started = Instant::now();
        let run = simulate(&config, &workload)?;
        let wall = started.elapsed();
        let report = Report::new(
            format!("{} (simulated)", pass.load),
            workload.description.clone(),
            &run.records,
            run.simulated,
            args.report.slo(),
        );
        println!("{}", report.table());
        println!("{}", summary(&run, wall));
        runs.push((report, run.records));
    }
    write_outputs(&args.report, &runs)
}

fn summary(run: &SimRun, wall: std::time::Duration) -> String {
    let mut out = format!(
        "simulated {:.1} s in {:.2} s of wall time ({:.0} requests/s, {} steps)\n\
         prefix hit rate {:.1}% of prompt tokens (router predicted {:.1}%); one unbounded cache: {:.1}% (ratio {:.2})\n\
         load: busiest worker's mean KV use is {:.2}x the mean\n\
         worker  requests  prompt tokens  hit rate  mean active blocks  busy\n",
        run.simulated.as_secs_f64(),
        wall.as_secs_f64(),
        run.records.len() as f64 / wall.as_secs_f64().max(1e-9),
        run.steps,
        100.0 * run.hit_rate(),
        100.0 * run.predicted_hit_tokens as f64 / run.prompt_tokens().max(1) as f64,
        100.0 * run.ideal_hit_rate(),
        run.hit_rate() / run.ideal_hit_rate().max(1e-9),
        run.load_imbalance(),
    );
    for (i, w) in run.workers.iter().enumerate() {
        out.push_str(&format!(
            "{:>6}  {:>8}  {:>13}  {:>7.1}%  {:>18.1}  {:>3.0}%\n",
            i + 1,
            w.requests,
            w.prompt_tokens,
            100.0 * w.hit_tokens as f64 / w.prompt_tokens.max(1) as f64,
            w.mean_active_blocks,
            100.0 * w.busy
        ));
    }
    out
}
