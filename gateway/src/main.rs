//! The `gateway` command: serve, migrate, manage keys, run the demo (see [`gateway::cli`]).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    gateway::cli::run(gateway::cli::Cli::parse()).await
}
