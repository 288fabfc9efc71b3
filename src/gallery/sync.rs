//! Replicas sharing one PostgreSQL database stay in sync through `LISTEN`/`NOTIFY`.
//!
//! Every gallery write announces a [`Change`] on [`CHANGE_CHANNEL`] inside its own transaction, so the
//! notification is delivered exactly when the change commits. Each replica listens; this task first
//! `LISTEN`s, *then* loads every index (so nothing committed in between is missed), then applies each
//! change as it arrives. If the connection drops, notifications may have been lost: the task reconnects and
//! reloads everything.

use super::Galleries;
use crate::store::{Change, CHANGE_CHANNEL};
use sqlx::postgres::PgListener;
use std::sync::Arc;
use std::time::Duration;

/// Listen for changes until `shutdown` resolves. `loaded` is told once the first full load has finished;
/// model activations go to `activations` (the model catalog follows them).
pub async fn listen(
    galleries: Arc<Galleries>,
    url: String,
    loaded: tokio::sync::oneshot::Sender<Result<(), String>>,
    activations: Option<tokio::sync::mpsc::UnboundedSender<(String, i64)>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut loaded = Some(loaded);
    loop {
        let mut listener = match connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                if let Some(tx) = loaded.take() {
                    let _ = tx.send(Err(format!("listening for gallery changes: {e}")));
                    return;
                }
                tracing::warn!(error = %e, "gallery listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let res = galleries.load_all().await.map_err(|e| e.to_string());
        let failed = res.is_err();
        if let Some(tx) = loaded.take() {
            let _ = tx.send(res);
            if failed {
                return;
            }
        } else if let Err(e) = res {
            tracing::warn!(error = %e, "gallery reload failed");
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                msg = listener.try_recv() => match msg {
                    Ok(Some(n)) => match serde_json::from_str::<Change>(n.payload()) {
                        Ok(Change::ModelActivated { model, version }) => {
                            if let Some(tx) = &activations {
                                let _ = tx.send((model, version));
                            }
                        }
                        Ok(ch) => {
                            if let Err(e) = galleries.apply(&ch).await {
                                tracing::warn!(error = %e, ?ch, "applying a gallery change failed; reloading");
                                break;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, payload = n.payload(), "unreadable gallery change"),
                    },
                    // The connection was lost (notifications may be missed): reconnect and reload.
                    Ok(None) => {
                        tracing::warn!("gallery listener lost its connection; reloading");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "gallery listener error; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect(url).await?;
    l.listen(CHANGE_CHANNEL).await?;
    Ok(l)
}
