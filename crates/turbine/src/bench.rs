//! `turbine bench`: wires the flags to the load generator and prints its report.

use crate::cli::BenchArgs;
use anyhow::{Context, bail};
use std::net::{SocketAddr, ToSocketAddrs};
use turbine_bench::{Connection, LoadConfig, run_closed_loop};

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let address = socket_address(&args.url)?;
    let model = match args.model {
        Some(model) => model,
        None => first_model(address, args.api_key.as_deref()).await?,
    };
    let config = LoadConfig {
        address,
        model,
        chat: args.chat,
        prompt: " hello".repeat(args.prompt_words),
        max_tokens: args.max_tokens,
        concurrency: args.concurrency,
        requests: args.requests,
        warmup: args.warmup.unwrap_or(args.concurrency),
        api_key: args.api_key,
    };
    eprintln!(
        "bench: {} requests, concurrency {}, {} against {}",
        config.requests,
        config.concurrency,
        if config.chat { "chat" } else { "completions" },
        args.url
    );
    let report = run_closed_loop(config).await?;
    print!("{}", report.table());
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn socket_address(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("only http:// URLs are supported: {url}"))?;
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:80")
    };
    host_port
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("cannot resolve {host_port}"))
}

async fn first_model(address: SocketAddr, api_key: Option<&str>) -> anyhow::Result<String> {
    let mut connection = Connection::open(address).await?;
    if let Some(key) = api_key {
        connection = connection.with_header("authorization", &format!("Bearer {key}"));
    }
    let models = connection.get("/v1/models").await?.json()?;
    match models.pointer("/data/0/id").and_then(|v| v.as_str()) {
        Some(id) => Ok(id.to_string()),
        None => bail!("the server lists no models: {models}"),
    }
}
