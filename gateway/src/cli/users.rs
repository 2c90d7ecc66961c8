//! `gateway users create`: a person who signs in to the admin console.

use clap::Subcommand;

use super::scope_for;
use crate::config::Config;
use crate::store;

#[derive(Subcommand)]
pub(super) enum UsersCommand {
    /// Add a console user. The password is read from the environment variable
    /// GATEWAY_NEW_PASSWORD, or else from the first line of standard input.
    Create {
        /// Their sign-in name.
        #[arg(long)]
        username: String,
        /// Limit them to this practice (ODS code).
        #[arg(
            long,
            required_unless_present_any = ["admin", "federation"],
            conflicts_with_all = ["admin", "federation"]
        )]
        practice: Option<String>,
        /// Limit them to the member practices of this federation (its name).
        #[arg(long, conflicts_with = "admin")]
        federation: Option<String>,
        /// Make them an administrator (every practice, and the standard wording).
        #[arg(long)]
        admin: bool,
    },
}

pub(super) async fn run(
    config: &Config,
    action: UsersCommand,
) -> Result<(), Box<dyn std::error::Error>> {
    let UsersCommand::Create {
        username,
        practice,
        federation,
        admin,
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
    let password = match std::env::var("GATEWAY_NEW_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    crate::auth::create_user(store.as_ref(), &username, &password, scope).await?;
    println!("user {username} can now sign in at /console");
    Ok(())
}
