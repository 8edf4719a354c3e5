//! A huge prompt never stalls other streams: while eight completions stream, four requests with
//! ~100k-token prompts (chat and completion) are tokenized. If tokenization ran on the async I/O
//! threads (the runtime has one per core; four big prompts occupy them all), every stream would
//! freeze for about as long as a big prompt takes to tokenize; on the blocking pool, the streams
//! keep their pace.

mod common;

use common::Server;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use turbine_bench::Connection;
use turbine_bench::sse::SseParser;

const STREAMS: usize = 8;
const BIG_REQUESTS: usize = 4;
/// The largest gap allowed between two chunks of one stream is this, or a quarter of the fastest
/// big request's latency if that is more (a loaded machine slows everything, the gaps included).
/// The echo engine sends a token every 5 ms. Were the big prompts tokenized on the I/O threads,
/// both would be blocked for at least one whole tokenization, about the fastest big request's
/// latency (seen: 1.0-1.4 s gaps for 1.0-1.4 s latencies in a debug build); on the blocking pool,
/// what remains is parsing the big JSON bodies on the I/O threads and the OS scheduler (seen:
/// 40-190 ms gaps, up to 320 ms on a machine at load 9, for 0.7-4 s latencies).
const MAX_GAP: Duration = Duration::from_millis(250);
/// Words in a background stream's prompt (about 1.4 tokens each); it streams its prompt back one
/// token per 5 ms, so it lasts well beyond the big requests, and is dropped once they are done.
const STREAM_WORDS: usize = 1500;
/// Words in a big prompt: about 100k tokens.
const BIG_WORDS: usize = 72_000;

/// Deterministic, varied English: sentences of random length from a few hundred words, with
/// capitals, numbers and punctuation, so the tokenizer sees realistic text.
fn english(seed: u64, words: usize) -> String {
    const VOCABULARY: &str = "the of and to in is was for that with as on by at from it an be this \
        which or are were but not have has had their its they been one all would there more when \
        river city market winter summer harbour lantern engine railway garden mountain library \
        council letter window morning evening island village merchant soldier teacher doctor \
        painter farmer sailor bridge castle forest meadow valley desert ocean thunder silver copper \
        quietly slowly suddenly carefully perhaps nevertheless although because however whereas \
        carried argued remembered discovered painted repaired wandered promised whispered \
        measured counted borrowed travelled gathered opened closed built written spoken forgotten \
        ancient modern bright narrow wooden heavy gentle curious famous hidden distant golden \
        broken patient hungry clever honest anxious cheerful stubborn generous careful \
        telescope microscope manuscript parliament committee agreement experiment philosophy \
        geography astronomy chemistry literature architecture orchestra symphony laboratory \
        government revolution electricity photograph newspaper telegraph typewriter \
        independence responsibility extraordinary unfortunately approximately particularly";
    let vocabulary: Vec<&str> = VOCABULARY.split_whitespace().collect();
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut text = String::with_capacity(words * 8);
    let mut sentence_left = 0;
    for _ in 0..words {
        let starts_sentence = sentence_left == 0;
        if starts_sentence {
            if !text.is_empty() {
                text.push_str([". ", "! ", "? ", ".\n\n"][(next() % 4) as usize]);
            }
            sentence_left = 5 + next() % 20;
        } else {
            text.push(' ');
        }
        sentence_left -= 1;
        let roll = next();
        if roll % 23 == 0 {
            text.push_str(&(roll % 100_000).to_string());
            continue;
        }
        let word = vocabulary[(roll as usize / 23) % vocabulary.len()];
        if starts_sentence {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                text.extend(first.to_uppercase());
                text.push_str(chars.as_str());
            }
        } else {
            text.push_str(word);
        }
        if roll % 17 == 0 {
            text.push(',');
        }
    }
    text
}

/// Arrival times of a stream's events. After `stop` changes, reads one more event (so a stall that
/// spans the stop is measured whole) and drops the stream, which cancels it.
async fn background_stream(
    connection: &mut Connection,
    body: Value,
    first: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Instant> {
    let response = common::start_completion(connection, &body).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut parser = SseParser::default();
    let mut arrivals = Vec::new();
    let mut stopping = false;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                continue;
            }
        };
        let now = Instant::now();
        let Some(frame) = frame else {
            break;
        };
        let Some(data) = frame.expect("frame").data_ref().cloned() else {
            continue;
        };
        let events = parser.push(&data);
        if events.is_empty() {
            continue;
        }
        if arrivals.is_empty() {
            let _ = first.send(()).await;
        }
        arrivals.extend(events.iter().map(|_| now));
        if stopping {
            break;
        }
    }
    arrivals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_prompts_never_stall_other_streams() {
    let server = Server::start(&[
        "--echo-delay-ms",
        "5",
        "--context-length",
        "200000",
        "--max-body-bytes",
        "16777216",
    ]);
    let model = server.model.clone();
    // ~100k tokens each, built before anything is timed.
    let big_bodies: Vec<(&str, bytes::Bytes)> = (0..BIG_REQUESTS)
        .map(|i| {
            let text = english(1000 + i as u64, BIG_WORDS);
            let (path, body) = if i % 2 == 0 {
                (
                    "/v1/chat/completions",
                    json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 1}),
                )
            } else {
                (
                    "/v1/completions",
                    json!({"model": model, "prompt": text, "max_tokens": 1}),
                )
            };
            (path, bytes::Bytes::from(body.to_string()))
        })
        .collect();
    let mut big_connections = Vec::new();
    for _ in 0..BIG_REQUESTS {
        big_connections.push(server.connect().await);
    }

    let (first_tx, mut first_rx) = mpsc::channel(STREAMS);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let mut connection = server.connect().await;
        let body = json!({
            "model": model,
            "prompt": english(i as u64, STREAM_WORDS),
            "max_tokens": STREAM_WORDS * 2,
            "stream": true,
        });
        let (first, stop) = (first_tx.clone(), stop_rx.clone());
        streams.push(tokio::spawn(async move {
            background_stream(&mut connection, body, first, stop).await
        }));
    }
    drop(first_tx);
    for _ in 0..STREAMS {
        tokio::time::timeout(Duration::from_secs(30), first_rx.recv())
            .await
            .expect("every stream starts within 30 s")
            .expect("a stream ended before its first chunk");
    }

    let big_started = Instant::now();
    let big = common::all(big_bodies.into_iter().zip(big_connections.iter_mut()).map(
        |((path, body), connection)| async move {
            let started = Instant::now();
            let response = connection
                .request(hyper::Method::POST, path, body)
                .await
                .expect("big request");
            let latency = started.elapsed();
            assert_eq!(
                response.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&response.body)
            );
            let prompt_tokens = response.json().expect("json")["usage"]["prompt_tokens"]
                .as_u64()
                .expect("prompt tokens");
            (path, latency, prompt_tokens, Instant::now())
        },
    ))
    .await;
    let big_ended = big.iter().map(|b| b.3).max().expect("big requests");
    stop_tx.send_replace(true);

    let mut max_gaps = Vec::new();
    for stream in streams {
        let arrivals = tokio::time::timeout(Duration::from_secs(60), stream)
            .await
            .expect("stream finished in time")
            .expect("stream task");
        assert!(
            arrivals.last().is_some_and(|&last| last >= big_ended),
            "a background stream ended before the big requests did, so they did not overlap \
             (big requests took {:?}); make the streams longer",
            big_ended - big_started
        );
        let max_gap = arrivals
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        max_gaps.push((max_gap, arrivals.len()));
    }
    let latencies: Vec<String> = big
        .iter()
        .map(|(path, latency, tokens, _)| format!("{path} {tokens} tokens in {latency:.2?}"))
        .collect();
    let gaps: Vec<String> = max_gaps
        .iter()
        .map(|(gap, chunks)| format!("{gap:.1?} over {chunks} chunks"))
        .collect();
    println!("big requests: {}", latencies.join(", "));
    println!("largest gap per background stream: {}", gaps.join(", "));
    for (_, _, tokens, _) in &big {
        assert!(*tokens >= 90_000, "a big prompt has only {tokens} tokens");
    }
    let fastest = big.iter().map(|b| b.1).min().unwrap_or_default();
    let limit = MAX_GAP.max(fastest / 4);
    let worst = max_gaps
        .iter()
        .map(|(gap, _)| *gap)
        .max()
        .unwrap_or_default();
    assert!(
        worst < limit,
        "a background stream stalled for {worst:?} (limit {limit:?}) while big prompts were \
         tokenized ({})",
        latencies.join(", ")
    );
}
