//! `turbine sim` against a live run: the same workload, once through the simulator in virtual
//! time and once through `turbine serve --engine mock` (real time, real HTTP) driven by
//! `turbine bench`, must agree on mean TTFT and on throughput: within 10%, or 20% where the live
//! run is the slower (the host's own work, which the simulator leaves out).

mod common;

use common::{Server, bench, report, scratch};
use serde_json::Value;

/// Long prompts (so prefill dominates TTFT and HTTP overhead is noise) in a closed loop of 6,
/// on 2 workers with the KV router.
const WORKLOAD: &[&str] = &[
    "--workload",
    "synthetic",
    "--requests",
    "64",
    "--input-len",
    "1024..3072",
    "--output-len",
    "16..48",
    "--concurrency",
    "6",
];

fn mean_ttft(report: &Value) -> f64 {
    report["ttft_ms"]["mean"].as_f64().expect("mean TTFT")
}

fn throughput(report: &Value) -> f64 {
    report["output_tokens_per_second"]
        .as_f64()
        .expect("throughput")
}

#[test]
fn the_simulator_agrees_with_live_mock_workers() {
    let dir = scratch("sim");
    let mut sim_args = vec!["sim", "--workers", "2", "--router", "kv"];
    sim_args.extend_from_slice(WORKLOAD);
    let simulated = report(&sim_args, &dir);

    let server = Server::start(&["--engine", "mock", "--workers", "2", "--router", "kv"]);
    let url = format!("http://{}", server.address);
    let mut live_args = vec!["--no-progress"];
    live_args.extend_from_slice(WORKLOAD);
    let live = bench(&url, &live_args, &dir);

    assert_eq!(simulated["completed"], 64);
    assert_eq!(live["completed"], 64);
    // The simulator leaves out the host's own work (HTTP, tokenizing, thread wake-ups), which
    // only ever slows the live run, and more on a loaded 2-core machine (here live TTFT measured
    // 0.96-1.12x the simulated, throughput 0.92-0.95x): 10% either way, 20% where live is the
    // slower.
    let (s, l) = (mean_ttft(&simulated), mean_ttft(&live));
    assert!(
        l >= 0.9 * s && l <= 1.2 * s,
        "mean TTFT: simulated {s:.2} ms, live {l:.2} ms"
    );
    let (s, l) = (throughput(&simulated), throughput(&live));
    assert!(
        l <= 1.1 * s && l >= 0.8 * s,
        "output tokens/s: simulated {s:.1}, live {l:.1}"
    );
}
