//! A split deployment as separate processes: real etcd and nats-server, three `turbine worker`
//! processes (mock engine) and one `turbine frontend`. 200 concurrent streams, one worker
//! killed with SIGKILL mid-run: every stream completes with exactly its tokens. Then SIGTERM on
//! another worker under load: it leaves discovery, finishes its requests and exits cleanly. Then
//! etcd down (requests still served) and NATS restarted (the router resyncs its index).

mod common;
#[path = "../../runtime/tests/common/mod.rs"]
mod infra;

use common::{all, metric_at, signal, spawn_turbine, stream};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;
use turbine_tokens::Tokenizer;

const MAX_TOKENS: u64 = 64;

/// A `turbine` process, killed when dropped, and the first line it printed.
struct Process {
    child: Child,
    line: String,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        let (child, line) = spawn_turbine(args);
        Process { child, line }
    }

    fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mock engine's output for `prompt`: generated token `i` is `prompt[i % prompt.len()]`.
fn mock_output(prompt: &[u32], n: usize) -> Vec<u32> {
    (0..n).map(|i| prompt[i % prompt.len()]).collect()
}

/// Whether `text` is what the mock writes for `prompt` without a break, or with one move to
/// another worker after some tokens (which then continues from prompt + those tokens): any
/// token lost or repeated at the seam fails this.
fn one_continuous_stream(tokenizer: &Tokenizer, prompt: &[u32], text: &str, n: usize) -> bool {
    let decode = |ids: &[u32]| tokenizer.decode(ids, false).expect("decode");
    let whole = mock_output(prompt, n);
    (0..n).any(|moved_after| {
        let mut ids = whole[..moved_after].to_vec();
        let mut moved_prompt = prompt.to_vec();
        moved_prompt.extend_from_slice(&ids);
        ids.extend(mock_output(&moved_prompt, n - moved_after));
        decode(&ids) == text
    })
}

/// Streams one completion and checks it whole: `[DONE]`, no error, exactly `MAX_TOKENS`, and
/// the text of one continuous stream.
async fn complete(address: SocketAddr, model: String, i: u32, tokenizer: Arc<Tokenizer>) {
    let mut c = turbine_bench::Connection::open(address)
        .await
        .expect("connect");
    let prompt: Vec<u32> = (0..48).map(|t| 1000 + i * 64 + t).collect();
    let body = json!({
        "model": model, "prompt": prompt, "max_tokens": MAX_TOKENS, "stream": true,
        "ignore_eos": true, "stream_options": {"include_usage": true}
    });
    let streamed = stream(&mut c, "/v1/completions", &body).await;
    assert!(streamed.done, "request {i}: no [DONE]");
    let errors: Vec<&Value> = streamed
        .events
        .iter()
        .filter(|e| e.get("error").is_some())
        .collect();
    assert!(errors.is_empty(), "request {i}: {errors:?}");
    let usage = streamed
        .events
        .iter()
        .find_map(|e| e.get("usage").filter(|u| !u.is_null()))
        .expect("usage");
    assert_eq!(usage["completion_tokens"], MAX_TOKENS, "request {i}");
    assert!(
        one_continuous_stream(&tokenizer, &prompt, &streamed.text(), MAX_TOKENS as usize),
        "request {i}: the text is not one continuous stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_cluster_survives_a_killed_worker_and_drains_on_sigterm() {
    let mut etcd = infra::Service::etcd();
    let mut nats = infra::Service::nats();
    let (discovery, events) = (etcd.url("etcd"), nats.url("nats"));
    infra::eventually("etcd and NATS up", Duration::from_secs(20), || async {
        let etcd_up = turbine_runtime::connect_discovery(Some(&discovery))
            .await
            .ok();
        let nats_up = turbine_runtime::connect_events(Some(&events)).await.ok();
        (etcd_up.is_some() && nats_up.is_some()).then_some(())
    })
    .await;
    let tokenizer = turbine_tokens::ModelTokenizer::load(
        turbine_tokens::cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .expect("the default model's tokenizer (scripts/fixtures.sh model)")
    .tokenizer;
    let cluster = ["--discovery", &discovery, "--events", &events];
    let worker_args: Vec<&str> = ["worker", "--engine", "mock", "--context-length", "4096"]
        .into_iter()
        .chain(cluster)
        .collect();
    let mut workers: Vec<Process> = (0..3).map(|_| Process::start(&worker_args)).collect();
    for w in &workers {
        assert!(w.line.starts_with("turbine: worker serving"), "{}", w.line);
    }
    let frontend_args: Vec<&str> = ["frontend", "--port", "0"]
        .into_iter()
        .chain(cluster)
        .collect();
    let frontend = Process::start(&frontend_args);
    let url = frontend
        .line
        .strip_prefix("turbine: frontend at http://")
        .and_then(|rest| rest.strip_suffix("/v1"))
        .unwrap_or_else(|| panic!("unexpected: {}", frontend.line));
    let address: SocketAddr = url.parse().expect("address");
    let model = infra::eventually("the model listed", Duration::from_secs(20), || async {
        let mut c = turbine_bench::Connection::open(address).await.ok()?;
        let models = c.get("/v1/models").await.ok()?.json().ok()?;
        models.pointer("/data/0/id")?.as_str().map(String::from)
    })
    .await;

    // Phase 1: SIGKILL one worker while 200 streams run.
    let run = all((0..200).map(|i| complete(address, model.clone(), i, tokenizer.clone())));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        workers[0].signal("KILL");
    };
    tokio::join!(run, kill);
    let moved = metric_at(address, "turbine_frontend_migrations_total", &[])
        .await
        .unwrap_or(0.0);
    assert!(moved >= 1.0, "the killed worker had no request in flight");

    // Phase 2: SIGTERM another worker under load; its requests finish where they are.
    let run = all((200..260).map(|i| complete(address, model.clone(), i, tokenizer.clone())));
    let drain = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        workers[1].signal("TERM");
    };
    tokio::join!(run, drain);
    let mut drained = workers.remove(1);
    let exit = infra::eventually("the drained worker exits", Duration::from_secs(20), || {
        let status = drained.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(exit.success(), "drained worker exited with {exit}");

    // Phase 3: etcd down: the frontend goes on with the workers it knows.
    etcd.kill();
    all((300..340).map(|i| complete(address, model.clone(), i, tokenizer.clone()))).await;
    etcd.restart();

    // Phase 4: NATS restarted: events published meanwhile are lost; the router notices the gap
    // (through the next event or load report) and catches up from the worker.
    let recoveries = || async {
        metric_at(address, "turbine_router_kv_recoveries_total", &[])
            .await
            .or(Some(0.0))
    };
    let before = recoveries().await.expect("metrics");
    nats.kill();
    all((400..420).map(|i| complete(address, model.clone(), i, tokenizer.clone()))).await;
    nats.restart();
    infra::eventually(
        "the router resyncs after NATS restarts",
        Duration::from_secs(20),
        || async {
            all((500..504).map(|i| complete(address, model.clone(), i, tokenizer.clone()))).await;
            recoveries().await.filter(|&after| after > before)
        },
    )
    .await;
}
