//! `gateway keys create`: an API key for one practice, a federation or the administrator,
//! printed once.

use clap::Subcommand;

use super::scope_for;
use crate::config::Config;
use crate::store;

#[derive(Subcommand)]
pub(super) enum KeysCommand {
    /// Create an API key and print it once.
    Create {
        /// Scope the key to this practice (ODS code).
        #[arg(
            long,
            required_unless_present_any = ["admin", "federation"],
            conflicts_with_all = ["admin", "federation"]
        )]
        practice: Option<String>,
        /// Scope the key to the member practices of this federation (its name).
        #[arg(long, conflicts_with = "admin")]
        federation: Option<String>,
        /// Make an administrator key (all practices).
        #[arg(long)]
        admin: bool,
        /// A note saying whose key it is.
        #[arg(long, default_value = "created with gateway keys create")]
        label: String,
    },
}

pub(super) async fn run(
    config: &Config,
    action: KeysCommand,
) -> Result<(), Box<dyn std::error::Error>> {
    let KeysCommand::Create {
        practice,
        federation,
        admin,
        label,
    } = action;
    let store = store::connect(&config.database.url, 1).await?;
    store.migrate().await?;
    let scope = scope_for(
        store.as_ref(),
        admin,
        practice.as_deref(),
        federation.as_deref(),
    )
    .await?;
    let key = crate::auth::issue_key(store.as_ref(), scope, &label, "cli").await?;
    println!("{key}");
    eprintln!("Keep this key safe: it is shown only now and stored only as a hash.");
    Ok(())
}
