//! Starts the real `turbine` binary on a free loopback port and stops it when dropped.

#![allow(dead_code)] // each test file uses a different part of this module

use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use turbine_bench::Connection;
use turbine_bench::sse::SseParser;

pub struct Server {
    child: Child,
    pub address: SocketAddr,
    pub model: String,
}

impl Server {
    /// `turbine serve --port 0 <args>` with the default model (and the echo engine unless `args`
    /// names one); waits until it serves.
    pub fn start(args: &[&str]) -> Server {
        let engine: &[&str] = if args.contains(&"--engine") {
            &[]
        } else {
            &["--engine", "echo"]
        };
        let mut all = vec!["serve", "--host", "127.0.0.1", "--port", "0"];
        all.extend_from_slice(engine);
        all.extend_from_slice(args);
        let (child, line) = spawn_turbine(&all);
        // "turbine: serving MODEL at http://ADDR/v1"
        let rest = line
            .strip_prefix("turbine: serving ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        let (model, url) = rest.split_once(" at ").expect("model and URL");
        let address = url
            .trim_start_matches("http://")
            .trim_end_matches("/v1")
            .parse()
            .expect("socket address");
        Server {
            child,
            address,
            model: model.to_string(),
        }
    }

    pub async fn connect(&self) -> Connection {
        Connection::open(self.address).await.expect("connect")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The sum of the samples of `name` whose labels contain every fragment; `None` if there are none.
    pub async fn metric(&self, name: &str, fragments: &[&str]) -> Option<f64> {
        metric_at(self.address, name, fragments).await
    }
}

/// [`Server::metric`] for any turbine process serving `/metrics` at `address`.
pub async fn metric_at(address: SocketAddr, name: &str, fragments: &[&str]) -> Option<f64> {
    let text = Connection::open(address)
        .await
        .expect("connect")
        .get("/metrics")
        .await
        .expect("metrics")
        .body;
    let text = String::from_utf8_lossy(&text).into_owned();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| fragments.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

/// Sends signal `name` (`TERM`, `KILL`, ...) to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Starts `turbine <args>` and returns it with the first line it printed (its address), waiting
/// up to two minutes; panics with a hint if nothing comes.
pub fn spawn_turbine(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turbine"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start turbine");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(line) => (child, line),
        Err(_) => {
            let _ = child.kill();
            panic!("turbine {args:?} did not start (is the model fetched? run scripts/fixtures.sh)")
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A streamed response: the JSON of each `data:` event before `[DONE]`, and whether `[DONE]` came.
pub struct Streamed {
    pub events: Vec<Value>,
    pub done: bool,
}

impl Streamed {
    /// The text of every chunk, in order (`text` for completions, `delta.content` for chat).
    pub fn texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| {
                let choice = e.pointer("/choices/0")?;
                choice
                    .get("text")
                    .or_else(|| choice.pointer("/delta/content"))?
                    .as_str()
                    .map(String::from)
            })
            .collect()
    }

    pub fn text(&self) -> String {
        self.texts().concat()
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.events.iter().rev().find_map(|e| {
            e.pointer("/choices/0/finish_reason")?
                .as_str()
                .map(String::from)
        })
    }
}

/// POSTs a completion request and returns once the response head arrives (status checked by the
/// caller), leaving the body to be read or dropped.
pub async fn start_completion(
    connection: &mut Connection,
    body: &Value,
) -> hyper::Response<hyper::body::Incoming> {
    connection
        .send(
            hyper::Method::POST,
            "/v1/completions",
            bytes::Bytes::from(body.to_string()),
        )
        .await
        .expect("send")
}

/// POSTs and reads a whole SSE stream (bounded by 60 s).
pub async fn stream(connection: &mut Connection, path: &str, body: &Value) -> Streamed {
    let response = connection
        .send(
            hyper::Method::POST,
            path,
            bytes::Bytes::from(body.to_string()),
        )
        .await
        .expect("send");
    assert_eq!(response.status(), 200, "streaming request failed");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut parser = SseParser::default();
    let mut streamed = Streamed {
        events: Vec::new(),
        done: false,
    };
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("frame");
            let Some(data) = frame.data_ref() else {
                continue;
            };
            for event in parser.push(data) {
                assert!(!streamed.done, "data after [DONE]");
                if event == "[DONE]" {
                    streamed.done = true;
                } else {
                    streamed
                        .events
                        .push(serde_json::from_str(&event).expect("event JSON"));
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("stream finished in time");
    streamed
}

/// Polls `check` every 50 ms until it returns `Ok`; after 10 s, fails with its last error.
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `n` futures at once and collects their outputs.
pub async fn all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    futures::stream::iter(futures)
        .buffer_unordered(usize::MAX)
        .collect()
        .await
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("turbine-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs `turbine bench --url <server> <args> --json <file>` and returns the JSON report.
pub fn bench(url: &str, args: &[&str], dir: &Path) -> Value {
    let mut all = vec!["bench", "--url", url];
    all.extend_from_slice(args);
    report(&all, dir)
}

/// Runs `turbine <args> --json <file>` (bench or sim) and returns the JSON report.
pub fn report(args: &[&str], dir: &Path) -> Value {
    let json = dir.join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_turbine"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run turbine bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "turbine {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(&json).expect("report written")).expect("report JSON")
}
