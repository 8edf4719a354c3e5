//! End-to-end tests of the OpenAI API through HTTP against the real binary (echo engine).

mod common;

use common::{Server, stream};
use serde_json::{Value, json};

#[tokio::test]
async fn completions_non_streaming_echoes_the_prompt() {
    let server = Server::start(&[]);
    let mut c = server.connect().await;
    let prompt = "The quick brown fox jumps over the lazy dog.";
    let response = c
        .post_json(
            "/v1/completions",
            &json!({"model": server.model, "prompt": prompt, "max_tokens": 100}),
        )
        .await
        .expect("request");
    assert_eq!(response.status, 200);
    let body = response.json().expect("json");
    assert!(body["id"].as_str().expect("id").starts_with("cmpl-"));
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], server.model);
    assert!(body["created"].as_u64().expect("created") > 1_700_000_000);
    assert_eq!(body["choices"][0]["text"], prompt);
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["choices"][0]["logprobs"], Value::Null);
    let usage = &body["usage"];
    let prompt_tokens = usage["prompt_tokens"].as_u64().expect("prompt tokens");
    assert!(prompt_tokens >= 9);
    assert_eq!(usage["completion_tokens"].as_u64(), Some(prompt_tokens));
    assert_eq!(usage["total_tokens"].as_u64(), Some(2 * prompt_tokens));
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);

    let response = c
        .post_json(
            "/v1/completions",
            &json!({"model": server.model, "prompt": prompt, "max_tokens": 3}),
        )
        .await
        .expect("request");
    let body = response.json().expect("json");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn completions_accepts_every_prompt_form() {
    let server = Server::start(&[]);
    let mut c = server.connect().await;
    let body = c
        .post_json(
            "/v1/completions",
            &json!({"model": server.model, "prompt": ["first one", "second"], "max_tokens": 20}),
        )
        .await
        .expect("request")
        .json()
        .expect("json");
    assert_eq!(body["choices"][0]["text"], "first one");
    assert_eq!(body["choices"][1]["text"], "second");
    assert_eq!(body["choices"][1]["index"], 1);

    let body = c
        .post_json(
            "/v1/completions",
            &json!({"model": server.model, "prompt": [28, 29, 30], "max_tokens": 20}),
        )
        .await
        .expect("request")
        .json()
        .expect("json");
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    assert_eq!(body["usage"]["completion_tokens"], 3);

    let streamed = stream(
        &mut c,
        "/v1/completions",
        &json!({"model": server.model, "prompt": ["alpha beta", "gamma"], "stream": true}),
    )
    .await;
    let text_of = |index: u64| -> String {
        streamed
            .events
            .iter()
            .filter(|e| e["choices"][0]["index"] == index)
            .filter_map(|e| e["choices"][0]["text"].as_str())
            .collect()
    };
    assert_eq!(text_of(0), "alpha beta");
    assert_eq!(text_of(1), "gamma");
    assert!(streamed.done);
}

#[tokio::test]
async fn completions_streaming_with_usage() {
    let server = Server::start(&[]);
    let mut c = server.connect().await;
    let prompt = "Streaming works one token at a time.";
    let streamed = stream(
        &mut c,
        "/v1/completions",
        &json!({"model": server.model, "prompt": prompt, "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert!(streamed.done);
    assert_eq!(streamed.text(), prompt);
    assert_eq!(streamed.finish_reason().as_deref(), Some("stop"));
    let (last, rest) = streamed.events.split_last().expect("events");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"]["completion_tokens"],
        last["usage"]["prompt_tokens"]
    );
    for event in rest {
        assert_eq!(event["object"], "text_completion");
        assert_eq!(
            event["usage"],
            Value::Null,
            "usage is null before the last chunk"
        );
    }

    let streamed = stream(
        &mut c,
        "/v1/completions",
        &json!({"model": server.model, "prompt": prompt, "stream": true}),
    )
    .await;
    assert!(
        streamed.events.iter().all(|e| e.get("usage").is_none()),
        "no usage field without include_usage"
    );
}

#[tokio::test]
async fn chat_non_streaming_and_streaming() {
    let server = Server::start(&[]);
    let mut c = server.connect().await;
    let messages = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Say hi"}]},
    ]);
    let body = c
        .post_json(
            "/v1/chat/completions",
            &json!({"model": server.model, "messages": messages, "max_completion_tokens": 6}),
        )
        .await
        .expect("request")
        .json()
        .expect("json");
    assert!(body["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 6);
    // The echo engine returns the rendered prompt: ChatML without its special tokens.
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(content.starts_with("system\nBe brief"), "{content:?}");

    let streamed = stream(
        &mut c,
        "/v1/chat/completions",
        &json!({"model": server.model, "messages": messages, "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert!(streamed.done);
    let first = &streamed.events[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert!(streamed.text().contains("user\nSay hi"));
    assert_eq!(streamed.finish_reason().as_deref(), Some("stop"));
    let usage = &streamed.events.last().expect("usage chunk")["usage"];
    assert!(usage["prompt_tokens"].as_u64().expect("prompt tokens") > 10);
}

#[tokio::test]
async fn stop_string_split_across_tokens_is_never_emitted() {
    let server = Server::start(&["--echo-delay-ms", "1"]);
    let mut c = server.connect().await;
    let prompt = "Hello world, this is a test of stop strings.";
    let request = json!({"model": server.model, "prompt": prompt, "stop": [" a test", "never"], "max_tokens": 50});
    let body = c
        .post_json("/v1/completions", &request)
        .await
        .expect("request")
        .json()
        .expect("json");
    assert_eq!(body["choices"][0]["text"], "Hello world, this is");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let mut streaming = request.clone();
    streaming["stream"] = json!(true);
    let streamed = stream(&mut c, "/v1/completions", &streaming).await;
    assert_eq!(streamed.text(), "Hello world, this is");
    assert!(
        streamed
            .texts()
            .iter()
            .all(|t| !t.contains("test") && !t.contains(" a"))
    );
    assert_eq!(streamed.finish_reason().as_deref(), Some("stop"));
}

#[tokio::test]
async fn multibyte_characters_split_across_tokens_arrive_whole() {
    let server = Server::start(&["--echo-delay-ms", "1"]);
    let mut c = server.connect().await;
    let prompt = "Crab 🦀, dragon 龘, café, and 🧑‍🚀 astronaut.";
    let streamed = stream(
        &mut c,
        "/v1/completions",
        &json!({"model": server.model, "prompt": prompt, "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(streamed.text(), prompt);
    assert!(streamed.texts().iter().all(|t| !t.contains('\u{FFFD}')));
    let tokens = streamed.events.last().expect("usage")["usage"]["completion_tokens"]
        .as_u64()
        .expect("tokens");
    let text_chunks = streamed.texts().iter().filter(|t| !t.is_empty()).count() as u64;
    assert!(
        text_chunks < tokens,
        "some characters span several tokens ({text_chunks} chunks, {tokens} tokens)"
    );
}

#[tokio::test]
async fn models_health_and_metrics() {
    let server = Server::start(&["--model-name", "smol"]);
    let mut c = server.connect().await;
    assert_eq!(server.model, "smol");
    let models = c
        .get("/v1/models")
        .await
        .expect("models")
        .json()
        .expect("json");
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "smol");
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(models["data"][0]["owned_by"], "turbine");
    assert_eq!(c.get("/v1/models/smol").await.expect("model").status, 200);
    assert_eq!(c.get("/v1/models/other").await.expect("model").status, 404);
    assert_eq!(c.get("/health").await.expect("health").status, 200);
    assert_eq!(c.get("/live").await.expect("live").status, 200);

    c.post_json(
        "/v1/completions",
        &json!({"model": "smol", "prompt": "count me", "max_tokens": 5}),
    )
    .await
    .expect("request");
    let metrics =
        String::from_utf8(c.get("/metrics").await.expect("metrics").body.to_vec()).expect("utf8");
    for name in [
        "turbine_frontend_requests_total{endpoint=\"completions\",model=\"smol\",status=\"200\"} 1",
        "turbine_frontend_time_to_first_token_seconds_count{model=\"smol\"} 1",
        "turbine_frontend_inter_token_latency_seconds_bucket",
        "turbine_frontend_request_duration_seconds_count{model=\"smol\"} 1",
        "turbine_frontend_input_tokens_sum{model=\"smol\"}",
        "turbine_frontend_output_tokens_sum{model=\"smol\"}",
        "turbine_frontend_inflight_requests{model=\"smol\"} 0",
        "turbine_frontend_queued_requests 0",
        "turbine_frontend_preprocess_seconds_count{stage=\"tokenize\"} 1",
        "turbine_worker_requests_total",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
}

async fn error_of(c: &mut turbine_bench::Connection, path: &str, body: &str) -> (u16, Value) {
    let response = c
        .request(
            hyper::Method::POST,
            path,
            bytes::Bytes::from(body.to_string()),
        )
        .await
        .expect("request");
    let json = response.json().expect("error JSON");
    let error = &json["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    assert!(error["type"].is_string(), "{json}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{json}"
    );
    (response.status.as_u16(), json)
}

#[tokio::test]
async fn errors_have_openai_shape_and_status() {
    let server = Server::start(&["--context-length", "64", "--max-body-bytes", "4096"]);
    let mut c = server.connect().await;
    let m = server.model.clone();
    let (completions, chat) = ("/v1/completions", "/v1/chat/completions");
    // (route, body, status, text the error message must contain)
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (completions, "{not json".into(), 400, "Invalid request body"),
        (
            completions,
            json!({"model": m, "prompt": "x", "temperature": "hot"}).to_string(),
            400,
            "temperature",
        ),
        (
            chat,
            json!({"model": m, "messages": [{"role": "wizard", "content": "x"}]}).to_string(),
            400,
            "messages[0].role",
        ),
        (
            chat,
            json!({"model": m, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})
                .to_string(),
            400,
            "image_url",
        ),
        (
            chat,
            json!({"model": m, "messages": []}).to_string(),
            400,
            "messages",
        ),
        (
            completions,
            json!({"model": "nope", "prompt": "x"}).to_string(),
            404,
            "nope",
        ),
        (
            completions,
            json!({"model": m, "prompt": "x".repeat(5000)}).to_string(),
            413,
            "4096",
        ),
        (
            completions,
            json!({"model": m, "prompt": "hello", "max_tokens": 100}).to_string(),
            400,
            "maximum context length is 64",
        ),
        (
            completions,
            json!({"model": m, "prompt": " word".repeat(80)}).to_string(),
            400,
            "your prompt has 80 tokens",
        ),
        (
            completions,
            json!({"model": m, "prompt": "x", "n": 2}).to_string(),
            400,
            "n = 2",
        ),
        (
            completions,
            json!({"model": m, "prompt": "x", "top_p": 1.5}).to_string(),
            400,
            "top_p",
        ),
        (
            completions,
            json!({"model": m, "prompt": "x", "max_tokens": 0}).to_string(),
            400,
            "max_tokens",
        ),
        (
            completions,
            json!({"model": m, "prompt": [999999999]}).to_string(),
            400,
            "out of range",
        ),
        (
            completions,
            json!({"model": m, "prompt": []}).to_string(),
            400,
            "prompt",
        ),
        ("/v1/nothing", "{}".into(), 404, "Unknown route"),
    ];
    for (path, body, status, needle) in cases {
        let (got, error) = error_of(&mut c, path, &body).await;
        assert_eq!(got, status, "{path} {body}: {error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{path} {body}: {message:?} lacks {needle:?}"
        );
    }
    assert_eq!(
        error_of(&mut c, "/v1/completions", "{}").await.1["error"]["type"],
        "invalid_request_error"
    );
    let response = c.get("/v1/completions").await.expect("request");
    assert_eq!(response.status, 405);
    response.json().expect("JSON error");
    // Unknown fields are ignored, as OpenAI does.
    let ok = c
        .post_json(
            "/v1/completions",
            &json!({"model": m, "prompt": "hi", "frobnicate": {"a": 1}}),
        )
        .await
        .expect("request");
    assert_eq!(ok.status, 200);
    let counted = server
        .metric("turbine_frontend_requests_total", &["status=\"400\""])
        .await;
    assert!(
        counted.is_some_and(|v| v >= 12.0),
        "400s are counted: {counted:?}"
    );
}

#[tokio::test]
async fn api_keys_guard_v1_routes_only() {
    let dir = std::env::temp_dir().join(format!("turbine-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("keys");
    std::fs::write(&file, "# keys\nfrom-file\n").expect("write keys");
    let server = Server::start(&[
        "--api-key",
        "secret",
        "--api-key-file",
        file.to_str().expect("path"),
    ]);
    let mut c = server.connect().await;
    let request = json!({"model": server.model, "prompt": "hi"});
    let (status, body) = error_of(&mut c, "/v1/completions", &request.to_string()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(c.get("/v1/models").await.expect("models").status, 401);
    assert_eq!(c.get("/health").await.expect("health").status, 200);
    assert_eq!(c.get("/metrics").await.expect("metrics").status, 200);
    for key in ["secret", "from-file"] {
        let mut authed = server
            .connect()
            .await
            .with_header("authorization", &format!("Bearer {key}"));
        assert_eq!(
            authed
                .post_json("/v1/completions", &request)
                .await
                .expect("request")
                .status,
            200
        );
    }
    let mut wrong = server
        .connect()
        .await
        .with_header("authorization", "Bearer nope");
    assert_eq!(
        wrong
            .post_json("/v1/completions", &request)
            .await
            .expect("request")
            .status,
        401
    );
    let _ = std::fs::remove_dir_all(&dir);
}
