//! `estafeta`: the command line. See `estafeta --help` and README.md.

mod args;
mod bench;
mod common;
mod files_cmd;
mod membership_cmd;
mod node_cmd;
mod pubsub_cmd;
mod streams_cmd;

use args::{Cli, Command, LogFormat, RuntimeKind};
use clap::Parser;
use common::Failure;
use estafeta_driver::Runtime;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse(); // bad arguments: clap prints why and exits 2
    init_logs(cli.log_format);
    let outcome = match cli.runtime {
        RuntimeKind::Tokio => {
            match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt.block_on(run::<estafeta_tokio::Tokio>(cli.command)),
                Err(e) => Err(Failure::Failed(format!("cannot start tokio: {e}"))),
            }
        }
        RuntimeKind::Smol => smol::block_on(run::<estafeta_smol::Smol>(cli.command)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("estafeta: {}", f.message());
            f.code()
        }
    }
}

async fn run<R: Runtime>(command: Command) -> Result<(), Failure> {
    match command {
        Command::Node(c) => node_cmd::run::<R>(c).await,
        Command::Sub(c) => pubsub_cmd::sub::<R>(c).await,
        Command::Pub(c) => pubsub_cmd::publish::<R>(c).await,
        Command::SendFile(c) => files_cmd::send::<R>(c).await,
        Command::ReceiveFiles(c) => files_cmd::receive::<R>(c).await,
        Command::Request(c) => streams_cmd::request::<R>(c).await,
        Command::Serve(c) => streams_cmd::serve::<R>(c).await,
        Command::Coordinator(c) => membership_cmd::coordinator::<R>(c).await,
        Command::Member(c) => membership_cmd::member::<R>(c).await,
        Command::Bench(c) => bench::run::<R>(c).await,
    }
}

/// Log lines to stderr, filtered by `RUST_LOG` (INFO by default).
fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
