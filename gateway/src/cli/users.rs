//! `gateway users create|list|disable`: the people who sign in to the admin console.

use clap::Subcommand;

use super::scope_for;
use crate::config::Config;
use crate::store::{self, KeyScope};

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
    /// List every console user: id, name, scope, when added and when disabled.
    List,
    /// Disable a user by sign-in name: they cannot sign in again, and every session of
    /// theirs ends at once on every instance.
    Disable {
        /// Their sign-in name.
        username: String,
    },
}

pub(super) async fn run(
    config: &Config,
    action: UsersCommand,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = store::connect(&config.database.url, 1).await?;
    store.migrate().await?;
    let (username, practice, federation, admin) = match action {
        UsersCommand::Create {
            username,
            practice,
            federation,
            admin,
        } => (username, practice, federation, admin),
        UsersCommand::List => {
            println!("id\tusername\tscope\tcreated\tdisabled");
            for user in store.users(crate::auth::users::LIST_LIMIT).await? {
                let scope = match user.scope {
                    KeyScope::Admin => "admin".to_string(),
                    KeyScope::Practice(id) => format!("practice:{id}"),
                    KeyScope::Federation(id) => format!("federation:{id}"),
                };
                println!(
                    "{}\t{}\t{scope}\t{}\t{}",
                    user.id,
                    user.username,
                    user.created_at.format("%Y-%m-%dT%H:%MZ"),
                    user.disabled_at
                        .map_or_else(|| "-".into(), |at| at.format("%Y-%m-%dT%H:%MZ").to_string()),
                );
            }
            return Ok(());
        }
        UsersCommand::Disable { username } => {
            let found = store
                .user_by_name(&username)
                .await?
                .ok_or_else(|| format!("no user {username} who is not already disabled"))?;
            match crate::auth::disable_user(store.as_ref(), found.id, "cli").await? {
                Some(true) => println!("user {username} is disabled and signed out"),
                Some(false) => println!("user {username} was already disabled"),
                None => return Err(format!("no user {username}").into()),
            }
            return Ok(());
        }
    };
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
