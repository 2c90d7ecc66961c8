//! `gateway keys create|list|revoke|rotate`: API keys for one practice, a federation or the
//! administrator; a new key is printed once, a list never shows one.

use clap::Subcommand;
use std::fmt::Write as _;

use super::scope_for;
use crate::config::Config;
use crate::domain::ApiKeyId;
use crate::store::{self, ApiKeySummary, KeyScope};

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
        /// When the key stops working (RFC 3339, such as 2027-03-31T23:59:59Z); never if
        /// not given.
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// List every key (never its secret): id, prefix, scope, label, created, last used,
    /// expiry and revocation.
    List,
    /// Revoke a key by id: every instance refuses it from its next request.
    Revoke {
        /// The key's id, as `gateway keys list` shows it.
        id: i64,
    },
    /// Replace a key by id with a new one of the same scope, label and expiry, print the new
    /// key once, and revoke the old one.
    Rotate {
        /// The key's id, as `gateway keys list` shows it.
        id: i64,
    },
}

pub(super) async fn run(
    config: &Config,
    action: KeysCommand,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = store::connect(&config.database.url, 1).await?;
    store.migrate().await?;
    match action {
        KeysCommand::Create {
            practice,
            federation,
            admin,
            label,
            expires_at,
        } => {
            let scope = scope_for(
                store.as_ref(),
                admin,
                practice.as_deref(),
                federation.as_deref(),
            )
            .await?;
            let (_, key) =
                crate::auth::issue_expiring_key(store.as_ref(), scope, &label, expires_at, "cli")
                    .await?;
            println!("{key}");
            eprintln!("Keep this key safe: it is shown only now and stored only as a hash.");
        }
        KeysCommand::List => {
            let keys = store.api_keys(crate::auth::keys::LIST_LIMIT).await?;
            print!("{}", table(&keys));
        }
        KeysCommand::Revoke { id } => {
            match crate::auth::revoke_key(store.as_ref(), ApiKeyId::new(id), "cli").await? {
                None => return Err(format!("no key {id}").into()),
                Some(false) => println!("key {id} was already revoked"),
                Some(true) => println!("key {id} is revoked"),
            }
        }
        KeysCommand::Rotate { id } => {
            let (new_id, key) = crate::auth::rotate_key(store.as_ref(), ApiKeyId::new(id), "cli")
                .await?
                .ok_or_else(|| format!("no live key {id}"))?;
            println!("{key}");
            eprintln!("Key {id} is revoked; its replacement is key {new_id}, shown only now.");
        }
    }
    Ok(())
}

/// The keys as a table with a header line; `-` for what is not set.
fn table(keys: &[ApiKeySummary]) -> String {
    let when = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map_or_else(
            || "-".to_string(),
            |at| at.format("%Y-%m-%dT%H:%MZ").to_string(),
        )
    };
    let mut out = String::from("id\tprefix\tscope\tcreated\tlast_used\texpires\trevoked\tlabel\n");
    for key in keys {
        let scope = match key.scope {
            KeyScope::Admin => "admin".to_string(),
            KeyScope::Practice(id) => format!("practice:{id}"),
            KeyScope::Federation(id) => format!("federation:{id}"),
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{scope}\t{}\t{}\t{}\t{}\t{}",
            key.id,
            key.prefix,
            when(Some(key.created_at)),
            when(key.last_used_at),
            when(key.expires_at),
            when(key.revoked_at),
            key.label.replace(['\t', '\n'], " "),
        );
    }
    out
}
