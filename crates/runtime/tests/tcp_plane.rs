//! The network request plane on loopback: streams arrive whole and in order, dropping a stream
//! cancels the worker's request, and failures (unknown instance, closed port, garbage in either
//! direction) are clear errors that leave both sides running.

use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use turbine_protocols::{
    EngineOutput, FinishReason, InstanceId, InstanceRecord, ModelCard, PreprocessedRequest,
    StopConditions, WorkerRole,
};
use turbine_runtime::{
    EmbeddedRequestPlane, EngineStream, Generate, RequestPlane, RuntimeError, TcpRequestPlane,
    serve_request_plane,
};

/// Streams `max_tokens` outputs (the prompt's tokens, cycled) 1 ms apart, and reports each
/// request's cancellation token.
struct Counter(mpsc::UnboundedSender<CancellationToken>);

impl Generate for Counter {
    fn generate(&self, request: PreprocessedRequest, cancel: CancellationToken) -> EngineStream {
        let _ = self.0.send(cancel);
        let n = request.stop.max_tokens;
        let prompt = request.token_ids;
        let items: BoxStream<'static, _> = futures::stream::iter(0..n)
            .then(move |i| {
                let token = prompt[i as usize % prompt.len()];
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok(EngineOutput {
                        token_ids: vec![token],
                        finish_reason: (i + 1 == n).then_some(FinishReason::Length),
                        cached_tokens: None,
                    })
                }
            })
            .boxed();
        items
    }
}

fn request(max_tokens: u32) -> PreprocessedRequest {
    PreprocessedRequest {
        request_id: "r".into(),
        token_ids: vec![5, 6, 7],
        sampling: Default::default(),
        stop: StopConditions {
            max_tokens,
            stop_token_ids: vec![],
        },
        priority: 0,
    }
}

fn record(id: u64, endpoint: String) -> InstanceRecord {
    InstanceRecord {
        id: InstanceId(id),
        role: WorkerRole::Aggregated,
        endpoint,
        model: ModelCard {
            name: "m".into(),
            source: "s".into(),
            context_length: 64,
            block_size: 4,
        },
    }
}

/// A worker process's side: one `Counter` worker served on a loopback port.
async fn worker() -> (String, mpsc::UnboundedReceiver<CancellationToken>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let plane = Arc::new(EmbeddedRequestPlane::default());
    plane.serve(InstanceId(1), Arc::new(Counter(tx)));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(serve_request_plane(listener, plane, std::future::pending()));
    (endpoint, rx)
}

#[tokio::test]
async fn streams_arrive_whole_and_many_share_a_connection() {
    let (endpoint, _cancels) = worker().await;
    let client = Arc::new(TcpRequestPlane::default());
    let instance = record(1, endpoint);
    let runs = (0..50).map(|_| {
        let client = client.clone();
        let instance = instance.clone();
        async move {
            let stream = client
                .generate(&instance, request(20))
                .await
                .expect("started");
            stream.collect::<Vec<_>>().await
        }
    });
    for items in futures::future::join_all(runs).await {
        let tokens: Vec<u32> = items
            .iter()
            .flat_map(|i| i.as_ref().expect("output").token_ids.clone())
            .collect();
        assert_eq!(tokens.len(), 20);
        assert_eq!(&tokens[..4], &[5, 6, 7, 5]);
        let last = items.last().expect("items").as_ref().expect("output");
        assert_eq!(last.finish_reason, Some(FinishReason::Length));
    }
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_request_on_the_worker() {
    let (endpoint, mut cancels) = worker().await;
    let client = TcpRequestPlane::default();
    let mut stream = client
        .generate(&record(1, endpoint), request(100_000))
        .await
        .expect("started");
    assert!(stream.next().await.expect("first").is_ok());
    let cancel = cancels.recv().await.expect("handler called");
    assert!(!cancel.is_cancelled());
    drop(stream);
    tokio::time::timeout(Duration::from_secs(2), cancel.cancelled())
        .await
        .expect("cancelled within 2 s");
}

#[tokio::test]
async fn unknown_instances_closed_ports_and_bad_requests_are_clear_errors() {
    let (endpoint, _cancels) = worker().await;
    let client = TcpRequestPlane::default();
    let err = client
        .generate(&record(9, endpoint.clone()), request(1))
        .await
        .err();
    assert_eq!(err, Some(RuntimeError::Unreachable(InstanceId(9))));

    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let err = client.generate(&record(1, dead), request(1)).await.err();
    assert_eq!(err, Some(RuntimeError::Unreachable(InstanceId(1))));

    // The echo-like worker publishes no KV events.
    let err = client.kv_catch_up(&record(1, endpoint), 0).await.err();
    assert!(matches!(err, Some(RuntimeError::Unsupported(_))), "{err:?}");
}

#[tokio::test]
async fn garbage_in_either_direction_leaves_both_sides_running() {
    let (endpoint, _cancels) = worker().await;
    // Garbage to the worker's port, then a malformed body to its route.
    let address = endpoint.trim_start_matches("http://").to_string();
    for junk in [
        &b"\x00\x01garbage\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff",
    ] {
        let mut socket = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        let _ = socket.write_all(junk).await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.read_to_end(&mut sink)).await;
    }
    let raw = post_body(&address, b"{not json").await;
    assert!(raw.contains("400"), "{raw}");

    // A "worker" that answers garbage.
    let liar = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let liar_endpoint = format!("http://{}", liar.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = liar.accept().await {
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n{{{{").await;
        }
    });
    let client = TcpRequestPlane::default();
    let err = client.generate(&record(1, liar_endpoint), request(3)).await;
    assert!(err.is_err());

    // The worker still serves.
    let stream = client
        .generate(&record(1, endpoint), request(3))
        .await
        .expect("still serving");
    assert_eq!(stream.collect::<Vec<_>>().await.len(), 3);
}

/// POSTs `body` to the generate route over HTTP/2; returns the status, or the error.
async fn post_body(address: &str, body: &[u8]) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = hyper::Request::post(format!("http://{address}/v1/instances/1/generate"))
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))
        .expect("request");
    match client.request(request).await {
        Ok(response) => response.status().to_string(),
        Err(err) => err.to_string(),
    }
}
