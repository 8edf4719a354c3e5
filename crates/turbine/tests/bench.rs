//! End-to-end tests of `turbine bench`: the real binary driving `turbine serve` (echo or mock
//! engine) with each workload kind, checked through its JSON report. Prompt lengths are checked
//! against the server's own count (`usage.prompt_tokens`), which the report sums.

mod common;

use common::{Server, bench, scratch};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use turbine_bench::workload::{TraceReplay, Vocabulary, read_trace};

fn url(server: &Server) -> String {
    format!("http://{}", server.address)
}

/// (requests, completed, input tokens as the server counted them, output tokens)
fn totals(report: &Value) -> (u64, u64, u64, u64) {
    let n = |key: &str| {
        report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {report}"))
    };
    (
        n("requests"),
        n("completed"),
        n("input_tokens"),
        n("output_tokens"),
    )
}

#[test]
fn synthetic_token_and_text_prompts_reach_the_server_exactly() {
    let server = Server::start(&[]);
    let dir = scratch("synthetic");
    let common = ["--requests", "20", "--input-len", "37", "--output-len", "8"];
    // Echo answers with the first `max_tokens` prompt tokens: 8 each.
    for format in ["tokens", "text"] {
        let report = bench(
            &url(&server),
            &[
                &common[..],
                &["--concurrency", "4", "--prompt-format", format],
            ]
            .concat(),
            &dir,
        );
        assert_eq!(
            totals(&report),
            (20, 20, 20 * 37, 20 * 8),
            "{format}: {report}"
        );
        assert_eq!(report["errors"], 0);
        assert_eq!(report["load"], "closed loop, concurrency 4");
        for key in ["ttft_ms", "e2e_ms"] {
            for stat in ["mean", "p50", "p90", "p99"] {
                assert!(
                    report[key][stat].as_f64().is_some(),
                    "{key}.{stat}: {report}"
                );
            }
        }
    }
    // Chat: the prompt is one user message, which the chat template wraps in more tokens.
    let report = bench(&url(&server), &[&common[..], &["--chat"]].concat(), &dir);
    let (requests, completed, input, _) = totals(&report);
    assert_eq!((requests, completed), (20, 20), "{report}");
    assert!(input > 20 * 37, "{report}");
}

#[test]
fn shared_prefix_and_multi_turn_lengths() {
    let server = Server::start(&[]);
    let dir = scratch("prefix");
    let report = bench(
        &url(&server),
        &[
            "--workload",
            "shared-prefix",
            "--groups",
            "2",
            "--users",
            "3",
            "--prefix-len",
            "20",
            "--input-len",
            "5",
            "--output-len",
            "4",
            "--concurrency",
            "2",
        ],
        &dir,
    );
    assert_eq!(totals(&report), (6, 6, 6 * 25, 6 * 4), "{report}");
    // Turns of 5 new tokens after 4-token answers: prompts of 5, 14 and 23 tokens.
    let report = bench(
        &url(&server),
        &[
            "--workload",
            "multi-turn",
            "--conversations",
            "2",
            "--turns",
            "3",
            "--input-len",
            "5",
            "--output-len",
            "4",
            "--think-time-ms",
            "5",
            "--rate",
            "100",
        ],
        &dir,
    );
    assert_eq!(
        totals(&report),
        (6, 6, 2 * (5 + 14 + 23), 6 * 4),
        "{report}"
    );
    assert!(report["send_lag_ms"]["p50"].as_f64().is_some(), "{report}");
}

#[test]
fn trace_replay_scales_lengths() {
    let server = Server::start(&[]);
    let dir = scratch("trace");
    // The checkout under test, read at run time: a test binary that cargo reuses from another
    // checkout of the same target directory would carry that checkout's path from `env!`.
    let trace = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("../../../shared/traces/mooncake_synthetic.jsonl");
    let report = bench(
        &url(&server),
        &[
            "--workload",
            "trace",
            "--trace",
            trace.to_str().expect("path"),
            "--trace-block-size",
            "16",
            "--speed",
            "100",
            "--requests",
            "40",
        ],
        &dir,
    );
    // The same slice built by the library: the server saw exactly its prompt lengths.
    let records = read_trace(&trace).expect("trace");
    let expected = TraceReplay {
        block_size: 16,
        speed: 100.0,
        start: Duration::ZERO,
        duration: None,
        max_requests: Some(40),
        seed: 0,
    }
    .build(&records, "t", &Vocabulary::from_ids(vec![1], None))
    .expect("workload");
    let input: u64 = expected
        .requests
        .iter()
        .map(|r| r.prompt.len() as u64)
        .sum();
    let output: u64 = expected
        .requests
        .iter()
        .map(|r| r.prompt.len().min(r.max_tokens as usize) as u64)
        .sum();
    assert_eq!(totals(&report), (40, 40, input, output), "{report}");
    assert!(
        report["workload"]
            .as_str()
            .is_some_and(|w| w.contains("block size 16 (lengths x 16/512)") && w.contains("/ 100")),
        "{report}"
    );
    assert!(
        report["load"]
            .as_str()
            .is_some_and(|l| l.contains("trace timestamps"))
    );
}

#[test]
fn mock_engine_open_loop_with_slos_and_a_sweep_with_plots() {
    let server = Server::start(&["--engine", "mock", "--speedup", "20"]);
    let dir = scratch("mock");
    let report = bench(
        &url(&server),
        &[
            "--requests",
            "30",
            "--rate",
            "40",
            "--input-len",
            "64..256",
            "--output-len",
            "16",
            "--slo-ttft-ms",
            "100000",
            "--slo-itl-ms",
            "100000",
        ],
        &dir,
    );
    let (requests, completed, _, output) = totals(&report);
    assert_eq!((requests, completed, output), (30, 30, 30 * 16), "{report}");
    assert_eq!(report["good_requests"], 30);
    assert!(
        report["itl_ms"]["p50"].as_f64().is_some_and(|v| v > 0.0),
        "{report}"
    );
    assert!(
        report["tpot_ms"]["mean"].as_f64().is_some_and(|v| v > 0.0),
        "{report}"
    );

    let plots = dir.join("plots");
    let sweep = bench(
        &url(&server),
        &[
            "--requests",
            "8",
            "--output-len",
            "4",
            "--sweep-concurrency",
            "1,4",
            "--plot",
            plots.to_str().expect("path"),
        ],
        &dir,
    );
    let runs = sweep.as_array().expect("a sweep reports an array");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["load"], "closed loop, concurrency 4");
    for name in ["ttft_cdf", "itl_cdf", "throughput_ttft", "throughput_itl"] {
        let svg = std::fs::read_to_string(plots.join(format!("{name}.svg"))).expect(name);
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{name}"
        );
    }
}

#[test]
fn errors_are_counted_by_kind() {
    let server = Server::start(&["--echo-delay-ms", "100"]);
    let dir = scratch("errors");
    let report = bench(
        &url(&server),
        &[
            "--model",
            "no-such-model",
            "--requests",
            "5",
            "--concurrency",
            "2",
        ],
        &dir,
    );
    assert_eq!(report["errors_by_kind"]["http_404"], 5, "{report}");
    assert_eq!(report["completed"], 0);
    // 40 tokens 100 ms apart outlast a 1 s timeout.
    let report = bench(
        &url(&server),
        &[
            "--model",
            &server.model,
            "--requests",
            "2",
            "--concurrency",
            "2",
            "--input-len",
            "40",
            "--output-len",
            "40",
            "--request-timeout-secs",
            "1",
        ],
        &dir,
    );
    assert_eq!(report["errors_by_kind"]["timeout"], 2, "{report}");
    // Nothing listens on a port that was just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let report = bench(
        &format!("http://127.0.0.1:{port}"),
        &["--model", "m", "--requests", "3"],
        &dir,
    );
    assert_eq!(report["errors_by_kind"]["connect"], 3, "{report}");
}
