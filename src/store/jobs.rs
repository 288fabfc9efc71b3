//! Retrain jobs, their files, model versions and the active version of each model.
//!
//! A job is a row whose `state` moves `queued → running → succeeded | failed | cancelled`; a job found
//! `running` when a process starts was interrupted (`interrupted`) and may be resumed (back to `queued`).
//! Model versions hold a card and its weights, so that every replica on one database can load any version;
//! activating a version is announced to the other replicas like a gallery change.

use super::{get, now_ms, Change, Result, Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;

/// A job as stored. `params`, `history` and `report` are JSON.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub state: String,
    pub model_id: String,
    pub params: serde_json::Value,
    pub history: Vec<serde_json::Value>,
    pub error: Option<String>,
    pub candidate_version: Option<i64>,
    pub report: Option<serde_json::Value>,
    pub promoted: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A sample of a collection as training reads it.
#[derive(Debug, Clone)]
pub struct CollectionSample {
    pub subject: String,
    pub sample: String,
    pub content_type: String,
    pub forgery: bool,
}

/// A model version as stored (the weights apart: [`Store::model_weights`]).
#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    pub model_id: String,
    pub version: i64,
    pub card: serde_json::Value,
    /// Whether the weights are in the database (otherwise the `models/` folder holds them).
    pub stored_weights: bool,
    pub parent_version: Option<i64>,
    pub job_id: Option<String>,
    pub created_at: i64,
}

fn json(r: &AnyRow, col: &str) -> Result<serde_json::Value> {
    let s: String = get(r, col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn job(r: &AnyRow) -> Result<JobRecord> {
    let report: Option<String> = get(r, "report")?;
    let history = match json(r, "history")? {
        serde_json::Value::Array(a) => a,
        other => return Err(StoreError::Corrupt(format!("history: {other}"))),
    };
    Ok(JobRecord {
        id: get(r, "id")?,
        state: get(r, "state")?,
        model_id: get(r, "model_id")?,
        params: json(r, "params")?,
        history,
        error: get(r, "error")?,
        candidate_version: get(r, "candidate_version")?,
        report: report.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))?,
        promoted: get::<i64>(r, "promoted")? != 0,
        created_at: get(r, "created_at")?,
        started_at: get(r, "started_at")?,
        finished_at: get(r, "finished_at")?,
    })
}

const JOB_COLS: &str =
    "id, state, model_id, params, history, error, candidate_version, report, promoted, created_at, started_at, finished_at";

fn version(r: &AnyRow) -> Result<VersionRecord> {
    Ok(VersionRecord {
        model_id: get(r, "model_id")?,
        version: get(r, "version")?,
        card: json(r, "card")?,
        stored_weights: get::<i64>(r, "stored")? != 0,
        parent_version: get(r, "parent_version")?,
        job_id: get(r, "job_id")?,
        created_at: get(r, "created_at")?,
    })
}

const VERSION_COLS: &str = "model_id, version, card, CASE WHEN weights IS NULL THEN 0 ELSE 1 END AS stored, \
                            parent_version, job_id, created_at";

impl Store {
    // ---- jobs ----

    pub async fn insert_job(&self, id: &str, model_id: &str, params: &serde_json::Value) -> Result<JobRecord> {
        sqlx::query(
            "INSERT INTO jobs (id, state, model_id, params, history, created_at) VALUES ($1, 'queued', $2, $3, '[]', $4)",
        )
        .bind(id)
        .bind(model_id)
        .bind(params.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.job(id).await
    }

    pub async fn job(&self, id: &str) -> Result<JobRecord> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        job(&row.ok_or_else(|| StoreError::not_found("job", id))?)
    }

    /// Jobs, newest first, older than the job `before` when given.
    pub async fn jobs(&self, before: Option<&str>, limit: i64) -> Result<Vec<JobRecord>> {
        let sql = format!(
            "SELECT {JOB_COLS} FROM jobs WHERE ($1 = '' OR (created_at, id) < \
             (SELECT created_at, id FROM jobs WHERE id = $1)) ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(before.unwrap_or("")).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(job).collect()
    }

    /// Take the oldest queued job: it becomes `running` (one claimant wins).
    pub async fn claim_next_job(&self) -> Result<Option<JobRecord>> {
        loop {
            let next: Option<String> =
                sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created_at, id LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await?;
            let Some(id) = next else { return Ok(None) };
            let done = sqlx::query(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, $2), finished_at = NULL, \
                 error = NULL, heartbeat = $2 WHERE id = $1 AND state = 'queued'",
            )
            .bind(&id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                return self.job(&id).await.map(Some);
            }
        }
    }

    /// Move a job from one of `from` to `to`; false when it was in none of them.
    pub async fn set_job_state(&self, id: &str, from: &[&str], to: &str) -> Result<bool> {
        let finished = matches!(to, "succeeded" | "failed" | "cancelled" | "interrupted").then(now_ms);
        let list = from.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
        let sql = format!("UPDATE jobs SET state = $2, finished_at = $3 WHERE id = $1 AND state IN ({list})");
        let r = sqlx::query(&sql).bind(id).bind(to).bind(finished).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    /// Jobs left `running` by a process that stopped: `interrupted`. Those whose heartbeat is older than
    /// `stale_ms` (0: every running job, for a process that knows it is the only one).
    pub async fn interrupt_running_jobs(&self, stale_ms: i64) -> Result<u64> {
        let now = now_ms();
        let r = sqlx::query(
            "UPDATE jobs SET state = 'interrupted', finished_at = $1 WHERE state = 'running' \
             AND ($2 = 0 OR COALESCE(heartbeat, 0) < $1 - $2)",
        )
        .bind(now)
        .bind(stale_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// The running job is alive; returns its state (another replica may have cancelled it).
    pub async fn job_heartbeat(&self, id: &str) -> Result<String> {
        sqlx::query("UPDATE jobs SET heartbeat = $2 WHERE id = $1 AND state = 'running'")
            .bind(id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1").bind(id).fetch_one(&self.pool).await?)
    }

    pub async fn set_job_history(&self, id: &str, history: &[serde_json::Value]) -> Result<()> {
        sqlx::query("UPDATE jobs SET history = $2 WHERE id = $1")
            .bind(id)
            .bind(serde_json::Value::Array(history.to_vec()).to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A running job ends: its final state, error, candidate and report.
    pub async fn finish_job(
        &self,
        id: &str,
        state: &str,
        error: Option<&str>,
        candidate_version: Option<i64>,
        report: Option<&serde_json::Value>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET state = $2, error = $3, candidate_version = $4, report = $5, finished_at = $6 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(error)
        .bind(candidate_version)
        .bind(report.map(|r| r.to_string()))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_job_promoted(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET promoted = 1 WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn put_job_file(&self, job_id: &str, name: &str, content_type: &str, data: &[u8]) -> Result<()> {
        sqlx::query("DELETE FROM job_files WHERE job_id = $1 AND name = $2")
            .bind(job_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO job_files (job_id, name, content_type, data) VALUES ($1, $2, $3, $4)")
            .bind(job_id)
            .bind(name)
            .bind(content_type)
            .bind(data)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A job's file: its content type and bytes.
    pub async fn job_file(&self, job_id: &str, name: &str) -> Result<(String, Vec<u8>)> {
        let row = sqlx::query("SELECT content_type, data FROM job_files WHERE job_id = $1 AND name = $2")
            .bind(job_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("job file", name))?;
        Ok((get(&row, "content_type")?, get(&row, "data")?))
    }

    // ---- training data from a collection ----

    /// Every sample of a collection, by subject then id.
    pub async fn collection_samples(&self, collection_id: &str) -> Result<Vec<CollectionSample>> {
        let rows = sqlx::query(
            "SELECT s.name AS subject, m.id AS sample, m.content_type, m.kind FROM samples m \
             JOIN subjects s ON s.id = m.subject_id WHERE m.collection_id = $1 ORDER BY s.name, m.id",
        )
        .bind(collection_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CollectionSample {
                    subject: get(r, "subject")?,
                    sample: get(r, "sample")?,
                    content_type: get(r, "content_type")?,
                    forgery: get::<String>(r, "kind")? == "forgery",
                })
            })
            .collect()
    }

    // ---- model versions ----

    /// Record a version seeded from the `models/` folder (weights stay there), unless it exists.
    pub async fn seed_version(&self, model_id: &str, version: i64, card: &str) -> Result<()> {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT version FROM model_versions WHERE model_id = $1 AND version = $2")
                .bind(model_id)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
        if exists.is_none() {
            let r =
                sqlx::query("INSERT INTO model_versions (model_id, version, card, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(model_id)
                    .bind(version)
                    .bind(card)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await;
            match r {
                Ok(_) => {}
                // Another replica seeded it first.
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Register a new version (the next number) with its card and weights; returns the number. The card
    /// is given with a placeholder version and gets the number assigned here.
    pub async fn add_version(
        &self,
        model_id: &str,
        card: &serde_json::Value,
        weights: &[u8],
        parent: Option<i64>,
        job_id: Option<&str>,
    ) -> Result<i64> {
        for _ in 0..5 {
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM model_versions WHERE model_id = $1")
                .bind(model_id)
                .fetch_one(&self.pool)
                .await?;
            let v = max.unwrap_or(0) + 1;
            let mut card = card.clone();
            card["version"] = v.into();
            let r = sqlx::query(
                "INSERT INTO model_versions (model_id, version, card, weights, parent_version, job_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(model_id)
            .bind(v)
            .bind(card.to_string())
            .bind(weights)
            .bind(parent)
            .bind(job_id)
            .bind(now_ms())
            .execute(&self.pool)
            .await;
            match r {
                Ok(_) => return Ok(v),
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict { kind: "model version", name: model_id.to_string() })
    }

    pub async fn versions(&self, model_id: &str) -> Result<Vec<VersionRecord>> {
        let sql = format!("SELECT {VERSION_COLS} FROM model_versions WHERE model_id = $1 ORDER BY version");
        let rows = sqlx::query(&sql).bind(model_id).fetch_all(&self.pool).await?;
        rows.iter().map(version).collect()
    }

    pub async fn version(&self, model_id: &str, v: i64) -> Result<VersionRecord> {
        let sql = format!("SELECT {VERSION_COLS} FROM model_versions WHERE model_id = $1 AND version = $2");
        let row = sqlx::query(&sql).bind(model_id).bind(v).fetch_optional(&self.pool).await?;
        version(&row.ok_or_else(|| StoreError::not_found("model version", &format!("{model_id} v{v}")))?)
    }

    /// A version's weights when stored in the database.
    pub async fn model_weights(&self, model_id: &str, v: i64) -> Result<Option<Vec<u8>>> {
        let w: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT weights FROM model_versions WHERE model_id = $1 AND version = $2")
                .bind(model_id)
                .bind(v)
                .fetch_optional(&self.pool)
                .await?;
        Ok(w.flatten())
    }

    /// The active version of a model, when one was ever activated.
    pub async fn active_version(&self, model_id: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT version FROM active_models WHERE model_id = $1")
            .bind(model_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Make `v` the active version of `model_id` and tell the other replicas.
    pub async fn set_active_version(&self, model_id: &str, v: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM active_models WHERE model_id = $1").bind(model_id).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO active_models (model_id, version, activated_at) VALUES ($1, $2, $3)")
            .bind(model_id)
            .bind(v)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        self.announce(&mut tx, &Change::ModelActivated { model: model_id.into(), version: v }.to_json()).await?;
        tx.commit().await?;
        Ok(())
    }
}
