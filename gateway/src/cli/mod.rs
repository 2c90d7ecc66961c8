//! The `gateway` command line: one subcommand per file where it does more than a few lines.
//! `main.rs` only parses the arguments and calls [`run`].

pub mod demo;
pub mod import_appointments;
pub mod import_contacts;
pub mod keys;
pub mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::cluster::Role;
use crate::config::Config;
use crate::domain::OdsCode;
use crate::store::{self, KeyScope, Store};
use crate::telemetry;

/// The command line as parsed.
#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Patient notification gateway for GP surgeries"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the dispatch workers until Ctrl-C or SIGTERM.
    Serve {
        /// What this instance runs: the API and a dispatch worker (`all`), the API only
        /// (`api`), or a worker with only health and metrics routes (`worker`). Several
        /// instances may share one PostgreSQL database (docs/deployment.md).
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: keys::KeysCommand,
    },
    /// Create a demo practice with synthetic patients, post a "systems down" status change,
    /// wait until every message is sent, print a summary, and keep serving.
    Demo {
        /// How many synthetic patients the demo practice gets.
        #[arg(long, default_value_t = 3000)]
        patients: u32,
    },
    /// Print the effective configuration, secrets masked.
    PrintConfig,
    /// Import a practice's patients and contacts from a CSV file (columns named as in the
    /// [import.columns] settings), with a progress bar and a summary; an interrupted import
    /// of the same file resumes where it stopped.
    ImportContacts(import_contacts::ImportArgs),
    /// Import a practice's booked appointments from a CSV file (columns nhs_number,
    /// starts_at, external_ref, and optionally clinician, location, mode, status), upserting
    /// by external_ref, and print a summary with each rejected row's line and reason.
    ImportAppointments(import_appointments::ImportAppointmentsArgs),
    /// Manage the people who sign in to the admin console.
    Users {
        #[command(subcommand)]
        action: users::UsersCommand,
    },
    /// Web push (VAPID) keys.
    Vapid {
        #[command(subcommand)]
        action: VapidCommand,
    },
}

#[derive(Subcommand)]
enum VapidCommand {
    /// Generate a VAPID key pair for the `webpush` provider and print it once.
    Generate,
}

/// Loads the configuration, starts logging, and runs the command; errors are printed.
pub async fn run(cli: Cli) -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exporter = match telemetry::init(&config.telemetry) {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let done = execute(cli.command, config).await;
    if let Some(exporter) = exporter {
        // Sends the spans still queued, waiting at most the export timeout.
        let _ = tokio::task::spawn_blocking(move || exporter.shutdown()).await;
    }
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, config: Config) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve { role } => serve(config, role).await?,
        Command::Migrate => {
            let store = store::connect(&config.database.url, 1).await?;
            store.migrate().await?;
            println!("database is up to date ({})", store.kind());
        }
        Command::Keys { action } => keys::run(&config, action).await?,
        Command::Demo { patients } => demo::run(config, patients).await?,
        Command::ImportContacts(args) => import_contacts::run(&config, args).await?,
        Command::PrintConfig => print!("{}", config.to_masked_toml()),
        Command::ImportAppointments(args) => import_appointments::run(&config, args).await?,
        Command::Users { action } => users::run(&config, action).await?,
        Command::Vapid {
            action: VapidCommand::Generate,
        } => {
            let (public, private) = crate::providers::generate_vapid_keys();
            println!("vapid_public_key = \"{public}\"");
            println!(
                "# Keep the private key out of config files: put it in the environment variable"
            );
            println!("# named by the provider's vapid_private_key_env, e.g.");
            println!("# export VAPID_PRIVATE_KEY={private}");
        }
    }
    Ok(())
}

/// `gateway serve`: listens on `server.bind` until Ctrl-C or SIGTERM.
async fn serve(config: Config, role: Role) -> Result<(), Box<dyn std::error::Error>> {
    let bind = config.server.bind;
    let state = AppState::build(config).await?;
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        format!("cannot listen on {bind}: {e} (set GATEWAY__SERVER__BIND to another address)")
    })?;
    tracing::info!(address = %listener.local_addr()?, database = state.store.kind(), role = role.as_str(), "gateway listening");
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    app::serve_as(state, role, listener, shutdown).await?;
    Ok(())
}

/// Who a key or a user made on the command line acts for: everything (`--admin`), the
/// federation named by `--federation`, or the practice named by `--practice`, which must
/// exist.
async fn scope_for(
    store: &dyn Store,
    admin: bool,
    practice: Option<&str>,
    federation: Option<&str>,
) -> Result<KeyScope, Box<dyn std::error::Error>> {
    if admin {
        return Ok(KeyScope::Admin);
    }
    if let Some(name) = federation {
        let found = store.federation_by_name(name).await?.ok_or_else(|| {
            format!("no federation {name:?}: create it first with POST /api/v1/federations")
        })?;
        return Ok(KeyScope::Federation(found.id));
    }
    let ods = OdsCode::parse(practice.unwrap_or_default())?;
    let found = store
        .practice_by_ods(&ods)
        .await?
        .ok_or_else(|| format!("no practice {ods}: create it first with POST /api/v1/practices"))?;
    Ok(KeyScope::Practice(found.id))
}
