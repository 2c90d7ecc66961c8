//! The `gateway` command: serve, migrate, manage keys, run the demo or a benchmark.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use gateway::app::{self, AppState};
use gateway::cluster::Role;
use gateway::config::Config;
use gateway::domain::OdsCode;
use gateway::intake::appointments::import_file_with;
use gateway::store::{self, KeyScope};
use gateway::{auth, bench, demo, telemetry};

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Patient notification gateway for GP surgeries"
)]
struct Cli {
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
        action: KeysCommand,
    },
    /// Create a demo practice with synthetic patients, post a "systems down" status change,
    /// wait until every message is sent, print a summary, and keep serving.
    Demo {
        /// How many synthetic patients the demo practice gets.
        #[arg(long, default_value_t = 3000)]
        patients: u32,
    },
    /// Measure performance (see docs/performance.md).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Print the effective configuration, secrets masked.
    PrintConfig,
    /// Import a practice's patients and contacts from a CSV file (columns named as in the
    /// [import.columns] settings), with a progress bar and a summary; an interrupted import
    /// of the same file resumes where it stopped.
    ImportContacts(gateway::intake::import::cli::ImportArgs),
    /// Import a practice's booked appointments from a CSV file (columns nhs_number,
    /// starts_at, external_ref, and optionally clinician, location, mode, status), upserting
    /// by external_ref, and print a summary with each rejected row's line and reason.
    ImportAppointments {
        /// The practice (ODS code).
        #[arg(long)]
        practice: String,
        /// The CSV file.
        file: std::path::PathBuf,
    },
    /// Manage the people who sign in to the admin console.
    Users {
        #[command(subcommand)]
        action: UsersCommand,
    },
    /// Web push (VAPID) keys.
    Vapid {
        #[command(subcommand)]
        action: VapidCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a console user. The password is read from the environment variable
    /// GATEWAY_NEW_PASSWORD, or else from the first line of standard input.
    Create {
        /// Their sign-in name.
        #[arg(long)]
        username: String,
        /// Limit them to this practice (ODS code).
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        practice: Option<String>,
        /// Make them an administrator (every practice, and the standard wording).
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
enum VapidCommand {
    /// Generate a VAPID key pair for the `webpush` provider and print it once.
    Generate,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key and print it once.
    Create {
        /// Scope the key to this practice (ODS code).
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        practice: Option<String>,
        /// Make an administrator key (all practices).
        #[arg(long)]
        admin: bool,
        /// A note saying whose key it is.
        #[arg(long, default_value = "created with gateway keys create")]
        label: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Fan-out throughput (messages planned and persisted per second) and peak memory.
    Fanout(bench::FanoutArgs),
    /// Dispatch throughput and CPU per message through an unlimited loopback provider, the
    /// achieved rate of a limited one, and urgent messages' wait behind a broadcast.
    Dispatch(bench::DispatchArgs),
    /// CSV contact import throughput (rows per second) and peak memory.
    Import(bench::ImportBenchArgs),
    /// CSV appointment import throughput (rows per second) and peak memory, per file size.
    Appointments(bench::AppointmentsBenchArgs),
    /// `/healthz` latency alone and during parallel anonymous sign-in loops.
    Signin(bench::SigninBenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&config.telemetry.log_filter);
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve { role } => {
            let bind = config.server.bind;
            let state = AppState::build(config).await?;
            let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
                format!(
                    "cannot listen on {bind}: {e} (set GATEWAY__SERVER__BIND to another address)"
                )
            })?;
            tracing::info!(address = %listener.local_addr()?, database = state.store.kind(), role = role.as_str(), "gateway listening");
            let shutdown = CancellationToken::new();
            app::cancel_on_signal(shutdown.clone());
            app::serve_as(state, role, listener, shutdown).await?;
        }
        Command::Migrate => {
            let store = store::connect(&config.database.url, 1).await?;
            store.migrate().await?;
            println!("database is up to date ({})", store.kind());
        }
        Command::Keys {
            action:
                KeysCommand::Create {
                    practice,
                    admin,
                    label,
                },
        } => {
            let store = store::connect(&config.database.url, 1).await?;
            store.migrate().await?;
            let scope = scope_for(store.as_ref(), admin, practice.as_deref()).await?;
            let key = auth::issue_key(store.as_ref(), scope, &label, "cli").await?;
            println!("{key}");
            eprintln!("Keep this key safe: it is shown only now and stored only as a hash.");
        }
        Command::Demo { patients } => demo::run(config, patients).await?,
        Command::Bench {
            which: BenchCommand::Fanout(args),
        } => bench::fanout(&config, args).await?,
        Command::Bench {
            which: BenchCommand::Dispatch(args),
        } => bench::dispatch(&config, args).await?,
        Command::Bench {
            which: BenchCommand::Import(args),
        } => bench::import(&config, args).await?,
        Command::Bench {
            which: BenchCommand::Appointments(args),
        } => bench::appointments(&config, args).await?,
        Command::Bench {
            which: BenchCommand::Signin(args),
        } => bench::signin(&config, args).await?,
        Command::ImportContacts(args) => gateway::intake::import::cli::run(&config, args).await?,
        Command::PrintConfig => print!("{}", config.to_masked_toml()),
        Command::ImportAppointments { practice, file } => {
            let store = store::connect(&config.database.url, 1).await?;
            store.migrate().await?;
            let (rows, summary) =
                import_file_with(store.as_ref(), &config.import, &practice, &file, "cli").await?;
            for rejected in &summary.rejected {
                for e in &rejected.errors {
                    let line = rejected.line.unwrap_or_default();
                    eprintln!("row {line}: {}: {}", e.field, e.reason);
                }
            }
            if summary.rejected_not_listed > 0 {
                eprintln!("... and {} more rows refused", summary.rejected_not_listed);
            }
            println!(
                "{rows} rows: {} created, {} updated, {} rejected",
                summary.created, summary.updated, summary.rejected_count
            );
            if summary.created + summary.updated == 0 && summary.rejected_count > 0 {
                return Err("no appointment could be imported".into());
            }
        }
        Command::Users {
            action:
                UsersCommand::Create {
                    username,
                    practice,
                    admin,
                },
        } => {
            let store = store::connect(&config.database.url, 1).await?;
            store.migrate().await?;
            let scope = scope_for(store.as_ref(), admin, practice.as_deref()).await?;
            let password = match std::env::var("GATEWAY_NEW_PASSWORD") {
                Ok(p) if !p.is_empty() => p,
                _ => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            auth::create_user(store.as_ref(), &username, &password, scope).await?;
            println!("user {username} can now sign in at /console");
        }
        Command::Vapid {
            action: VapidCommand::Generate,
        } => {
            let (public, private) = gateway::providers::generate_vapid_keys();
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

/// Everything (`--admin`) or the practice named by `--practice`, which must exist.
async fn scope_for(
    store: &dyn gateway::store::Store,
    admin: bool,
    practice: Option<&str>,
) -> Result<KeyScope, Box<dyn std::error::Error>> {
    if admin {
        return Ok(KeyScope::Admin);
    }
    let ods = OdsCode::parse(practice.unwrap_or_default())?;
    let found = store
        .practice_by_ods(&ods)
        .await?
        .ok_or_else(|| format!("no practice {ods}: create it first with POST /api/v1/practices"))?;
    Ok(KeyScope::Practice(found.id))
}
