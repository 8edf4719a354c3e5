//! End-to-end tests of load, cancellation, overload and shutdown against the real binary.

mod common;

use common::{Server, all, eventually, signal, stream};
use http_body_util::BodyExt;
use serde_json::json;
use std::time::Duration;
use turbine_bench::sse::SseParser;

#[tokio::test]
async fn a_thousand_concurrent_streams_all_complete() {
    let server = Server::start(&["--echo-delay-ms", "2"]);
    let prompt = "one two three four five six seven eight";
    let results = all((0..1000).map(|i| {
        let address = server.address;
        let model = server.model.clone();
        async move {
            let mut c = turbine_bench::Connection::open(address)
                .await
                .expect("connect");
            let body =
                json!({"model": model, "prompt": prompt, "stream": true, "user": format!("u{i}")});
            stream(&mut c, "/v1/completions", &body).await
        }
    }))
    .await;
    assert_eq!(results.len(), 1000);
    for streamed in results {
        assert!(streamed.done);
        assert_eq!(streamed.text(), prompt);
        assert_eq!(streamed.finish_reason().as_deref(), Some("stop"));
    }
    let ok = server
        .metric("turbine_frontend_requests_total", &["status=\"200\""])
        .await;
    assert_eq!(ok, Some(1000.0));
}

#[tokio::test]
async fn client_disconnect_cancels_the_engine() {
    let server = Server::start(&["--echo-delay-ms", "20"]);
    let mut c = server.connect().await;
    let body = json!({"model": server.model, "prompt": " word".repeat(200), "max_tokens": 200, "stream": true});
    let response = common::start_completion(&mut c, &body).await;
    let mut body = response.into_body();
    let mut parser = SseParser::default();
    let mut texts = 0;
    while texts == 0 {
        let frame = body.frame().await.expect("a frame").expect("frame");
        if let Some(data) = frame.data_ref() {
            texts += parser
                .push(data)
                .iter()
                .filter(|e| e.contains("\"text\":\" word"))
                .count();
        }
    }
    drop(body);
    drop(c);
    let server = &server;
    eventually(|| async move {
        let cancelled = server
            .metric("turbine_worker_requests_total", &["outcome=\"cancelled\""])
            .await;
        let disconnected = server
            .metric("turbine_frontend_requests_total", &["status=\"499\""])
            .await;
        let active = server.metric("turbine_worker_active_requests", &[]).await;
        if cancelled == Some(1.0) && disconnected == Some(1.0) && active == Some(0.0) {
            Ok(())
        } else {
            Err(format!(
                "cancellation did not reach the engine: {cancelled:?} {disconnected:?} {active:?}"
            ))
        }
    })
    .await;
    let finished = server
        .metric("turbine_worker_requests_total", &["outcome=\"finished\""])
        .await;
    assert_eq!(finished, Some(0.0));
}

#[tokio::test]
async fn overload_answers_503_with_retry_after() {
    let server = Server::start(&[
        "--echo-delay-ms",
        "20",
        "--max-concurrent-requests",
        "1",
        "--max-queued-requests",
        "0",
    ]);
    let mut holder = server.connect().await;
    let long = json!({"model": server.model, "prompt": " word".repeat(100), "stream": true});
    let response = common::start_completion(&mut holder, &long).await;
    assert_eq!(response.status(), 200);
    let mut c = server.connect().await;
    let rejected = c
        .post_json(
            "/v1/completions",
            &json!({"model": server.model, "prompt": "hi"}),
        )
        .await
        .expect("request");
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.headers["retry-after"], "1");
    assert_eq!(
        rejected.json().expect("json")["error"]["type"],
        "service_unavailable_error"
    );
    drop(response);
    drop(holder);
    let server = &server;
    eventually(|| async move {
        let request = json!({"model": server.model, "prompt": "hi"});
        let status = server
            .connect()
            .await
            .post_json("/v1/completions", &request)
            .await
            .expect("request")
            .status;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("the slot was never released: {status}"))
        }
    })
    .await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_streams_then_exits() {
    let mut server = Server::start(&["--echo-delay-ms", "20"]);
    let mut c = server.connect().await;
    let prompt = " word".repeat(40);
    let body = json!({"model": server.model, "prompt": prompt, "stream": true});
    let in_flight = tokio::spawn(async move { stream(&mut c, "/v1/completions", &body).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(server.pid(), "TERM");
    let streamed = in_flight.await.expect("join");
    assert!(streamed.done, "the in-flight stream finished");
    assert_eq!(streamed.text(), prompt);
    let exit = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .expect("join");
    assert!(
        exit.is_some_and(|s| s.success()),
        "exited cleanly: {exit:?}"
    );
}
