//! `turbine sim` against a live run: the same workload, once through the simulator in virtual
//! time and once through `turbine serve --engine mock` (real time, real HTTP) driven by
//! `turbine bench`, must agree within 10% on mean TTFT and on throughput.

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
    let (s, l) = (mean_ttft(&simulated), mean_ttft(&live));
    assert!(
        (s - l).abs() <= 0.1 * l,
        "mean TTFT: simulated {s:.2} ms, live {l:.2} ms"
    );
    let (s, l) = (throughput(&simulated), throughput(&live));
    assert!(
        (s - l).abs() <= 0.1 * l,
        "output tokens/s: simulated {s:.1}, live {l:.1}"
    );
}
