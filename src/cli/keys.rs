//! `siamese keys create|list|revoke`: API keys, straight in the database (no server needed).

use super::DbArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create a key and print it (it is shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: verify, enrol, admin.
        #[arg(long)]
        scopes: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

pub fn keys(a: KeysArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = crate::store::Store::connect(&a.db.url).await.with_context(|| format!("opening {}", a.db.url))?;
        let auth = crate::auth::Auth::new(store.clone());
        match a.action {
            KeysAction::Create { name, scopes } => {
                let k = auth.create_key(&name, &crate::auth::parse_scopes(&scopes)?).await?;
                println!("{}", serde_json::to_string_pretty(&k)?);
                eprintln!("siamese: keep this key now; only its hash is stored");
            }
            KeysAction::List => {
                for k in auth.list().await? {
                    println!("{}", serde_json::to_string(&k)?);
                }
            }
            KeysAction::Revoke { id } => {
                auth.revoke(&id).await?;
                eprintln!("siamese: key {id} revoked");
            }
        }
        store.close().await;
        Ok(())
    })
}
