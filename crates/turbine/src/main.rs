//! `turbine`: one binary for every Turbine role. `serve` runs the whole system in one process.

mod bench;
mod cli;
mod generate;
mod gpu_bench;
mod serve;
mod sim;
mod workload;

use clap::Parser;

/// The server allocates many small, short-lived buffers per token (JSON frames, text deltas);
/// mimalloc handles that pattern with far less contention than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        cli::Command::Serve(args) => runtime.block_on(serve::run(*args, serve::Role::All)),
        cli::Command::Worker(args) => runtime.block_on(serve::run(*args, serve::Role::Worker)),
        cli::Command::Frontend(args) => runtime.block_on(serve::run(*args, serve::Role::Frontend)),
        cli::Command::Bench(args) => runtime.block_on(bench::run(*args)),
        cli::Command::Sim(args) => sim::run(*args),
        cli::Command::GpuBench(args) => gpu_bench::run(*args),
        cli::Command::Generate(args) => generate::run(*args),
    }
}
