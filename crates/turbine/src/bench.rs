//! `turbine bench`: wires the flags to the workload, the load generator and the report.

use crate::cli::{BenchArgs, LoadArgs, PromptFormatArg, ReportArgs, WorkloadArgs, WorkloadKind};
use anyhow::{Context, bail};
use serde_json::{Map, Value};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;
use turbine_bench::request::{Api, Planned, PromptFormat, RequestFormat, prepare};
use turbine_bench::{Arrival, Connection, LoadConfig, Report, RequestRecord, Workload, plot};

/// One measured pass: what drives it, and its limit on requests in flight.
pub struct Pass {
    pub load: String,
    pub concurrency: Option<usize>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let address = socket_address(&args.url)?;
    let model = match &args.model {
        Some(model) => model.clone(),
        None => first_model(address, args.api_key.as_deref()).await?,
    };
    let text = args.chat || args.prompt_format == PromptFormatArg::Text;
    let (tokenizer, workload) = crate::workload::build(&args.workload, text)?;
    let (workload, passes) = passes(&args.load, &args.workload, workload)?;
    let format = RequestFormat {
        model,
        api: if args.chat {
            Api::Chat
        } else {
            Api::Completions
        },
        prompt: if text {
            PromptFormat::Text
        } else {
            PromptFormat::Tokens
        },
        extra: extra_body(args.extra_body.as_deref())?,
    };
    let prepared = prepare(&workload, &format, Some(&tokenizer))?;
    let requests = prepared.requests;
    eprintln!("bench: {} against {}", workload.description, args.url);
    if let Some(mismatches) = prepared.text_mismatches {
        eprintln!(
            "bench: {} of {} text prompts encode back to exactly their token ids",
            requests.len() - mismatches,
            requests.len()
        );
    }
    let slo = args.report.slo();
    let mut runs = Vec::new();
    for pass in passes {
        let config = LoadConfig {
            address,
            api_key: args.api_key.clone(),
            path: format.path(),
            concurrency: pass.concurrency,
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            progress: !args.no_progress,
        };
        if args.warmup > 0 {
            turbine_bench::run(&config, &warmup(&requests, args.warmup)).await;
        }
        let run = turbine_bench::run(&config, &requests).await;
        let report = Report::new(
            pass.load,
            workload.description.clone(),
            &run.records,
            run.wall,
            slo,
        );
        println!("{}", report.table());
        runs.push((report, run.records));
    }
    write_outputs(&args.report, &runs)?;
    Ok(())
}

/// Writes the `--json` report (an array for several passes) and the `--plot` charts.
pub fn write_outputs(
    args: &ReportArgs,
    runs: &[(Report, Vec<RequestRecord>)],
) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        let json = match runs {
            [(report, _)] => serde_json::to_vec_pretty(report)?,
            _ => serde_json::to_vec_pretty(&runs.iter().map(|r| &r.0).collect::<Vec<_>>())?,
        };
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(dir) = &args.plot {
        let written = plot::write_plots(dir, runs)
            .with_context(|| format!("cannot write plots to {}", dir.display()))?;
        for path in written {
            eprintln!("bench: wrote {}", path.display());
        }
    }
    Ok(())
}

/// How the workload's requests arrive, and the passes to make: a sweep of closed loops, one open
/// loop (Poisson or trace timestamps), or one closed loop.
pub fn passes(
    args: &LoadArgs,
    workload_args: &WorkloadArgs,
    workload: Workload,
) -> anyhow::Result<(Workload, Vec<Pass>)> {
    let trace_timestamps = workload_args.workload == WorkloadKind::Trace && !args.closed_loop;
    if !args.sweep_concurrency.is_empty() {
        if args.rate.is_some() || args.concurrency.is_some() {
            bail!("--sweep-concurrency sets the concurrency; leave out --rate and --concurrency");
        }
        let passes = args
            .sweep_concurrency
            .iter()
            .map(|&c| Pass {
                load: format!("closed loop, concurrency {c}"),
                concurrency: Some(c),
            })
            .collect();
        return Ok((workload.closed_loop(), passes));
    }
    let cap = match args.concurrency {
        Some(c) => format!(", at most {c} in flight"),
        None => String::new(),
    };
    let (workload, pass) = if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of requests per second");
        }
        let load = format!("open loop, Poisson {rate} req/s{cap}");
        let workload = workload.with_poisson_arrivals(rate, workload_args.seed);
        (
            workload,
            Pass {
                load,
                concurrency: args.concurrency,
            },
        )
    } else if trace_timestamps {
        let load = format!("open loop, trace timestamps / {}{cap}", workload_args.speed);
        (
            workload,
            Pass {
                load,
                concurrency: args.concurrency,
            },
        )
    } else {
        let c = args.concurrency.unwrap_or(1);
        let load = format!("closed loop, concurrency {c}");
        (
            workload.closed_loop(),
            Pass {
                load,
                concurrency: Some(c),
            },
        )
    };
    Ok((workload, vec![pass]))
}

/// `n` closed-loop copies of the first requests.
fn warmup(requests: &[Planned], n: usize) -> Vec<Planned> {
    requests
        .iter()
        .cycle()
        .take(n)
        .map(|r| Planned {
            arrival: Arrival::Closed,
            after: None,
            body: r.body.clone(),
        })
        .collect()
}

fn extra_body(json: Option<&str>) -> anyhow::Result<Map<String, Value>> {
    match json.map(serde_json::from_str::<Value>).transpose() {
        Ok(None) => Ok(Map::new()),
        Ok(Some(Value::Object(fields))) => Ok(fields),
        _ => bail!("--extra-body must be a JSON object"),
    }
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
