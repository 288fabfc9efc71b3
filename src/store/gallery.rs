//! Queries on collections, subjects, samples and embeddings. Every change to a gallery is one transaction,
//! announced to replicas (PostgreSQL) inside it.

use super::records::{collection, floats, sample, subject};
use super::{get, new_id, now_ms, Result, Store, StoreError};
use super::{Change, Collection, EmbeddingRow, NewSample, QualityPolicy, Sample, StoredEmbedding, Subject};
use crate::model::Modality;

const SUBJECT_COLS: &str = "s.id, s.collection_id, s.name, s.metadata, s.created_at, \
     (SELECT COUNT(*) FROM samples m WHERE m.subject_id = s.id) AS sample_count";
const SAMPLE_COLS: &str =
    "id, subject_id, sha256, content_type, width, height, byte_size, created_at, detect, kind, quality";
const COLLECTION_COLS: &str = "id, name, modality, model_id, created_at, quality_policy";

impl Store {
    // ---- collections ----

    pub async fn create_collection(
        &self,
        name: &str,
        modality: Modality,
        model_id: &str,
        quality_policy: QualityPolicy,
    ) -> Result<Collection> {
        let c = Collection {
            id: new_id("col"),
            name: name.to_string(),
            modality,
            model_id: model_id.to_string(),
            created_at: now_ms(),
            quality_policy,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO collections (id, name, modality, model_id, created_at, quality_policy) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(c.modality.as_str())
        .bind(&c.model_id)
        .bind(c.created_at)
        .bind(c.quality_policy.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_or(e, "collection", name))?;
        self.announce(&mut tx, &Change::CollectionAdded { collection: c.id.clone() }.to_json()).await?;
        tx.commit().await?;
        Ok(c)
    }

    /// Set what uploads to a collection do with flagged samples.
    pub async fn set_quality_policy(&self, name: &str, policy: QualityPolicy) -> Result<Collection> {
        let done = sqlx::query("UPDATE collections SET quality_policy = $1 WHERE name = $2")
            .bind(policy.as_str())
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("collection", name));
        }
        self.collection(name).await
    }

    /// Samples of a collection whose upload verdict was `low_quality` (or had that flag): sample id, subject
    /// name, the verdict (JSON text).
    pub async fn low_quality_samples(&self, collection_id: &str) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT m.id, s.name, m.quality FROM samples m JOIN subjects s ON s.id = m.subject_id \
             WHERE m.collection_id = $1 AND m.quality LIKE '%low_quality%' ORDER BY s.name, m.id",
        )
        .bind(collection_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((get(r, "id")?, get(r, "name")?, get(r, "quality")?))).collect()
    }

    pub async fn collection(&self, name: &str) -> Result<Collection> {
        let row = sqlx::query(&format!("SELECT {COLLECTION_COLS} FROM collections WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("collection", name))?;
        collection(&row)
    }

    pub async fn collection_by_id(&self, id: &str) -> Result<Option<Collection>> {
        let row = sqlx::query(&format!("SELECT {COLLECTION_COLS} FROM collections WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(collection).transpose()
    }

    pub async fn collections(&self) -> Result<Vec<Collection>> {
        let rows = sqlx::query(&format!("SELECT {COLLECTION_COLS} FROM collections ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(collection).collect()
    }

    /// Erase a collection with everything in it.
    pub async fn delete_collection(&self, name: &str) -> Result<Collection> {
        let c = self.collection(name).await?;
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM embeddings WHERE collection_id = $1",
            "DELETE FROM sample_images WHERE sample_id IN (SELECT id FROM samples WHERE collection_id = $1)",
            "DELETE FROM samples WHERE collection_id = $1",
            "DELETE FROM subjects WHERE collection_id = $1",
            "DELETE FROM collections WHERE id = $1",
        ] {
            sqlx::query(sql).bind(&c.id).execute(&mut *tx).await?;
        }
        self.announce(&mut tx, &Change::CollectionRemoved { collection: c.id.clone() }.to_json()).await?;
        tx.commit().await?;
        self.scrub().await;
        Ok(c)
    }

    // ---- subjects ----

    pub async fn create_subject(
        &self,
        collection_id: &str,
        name: &str,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Subject> {
        let s = Subject {
            id: new_id("sub"),
            collection_id: collection_id.to_string(),
            name: name.to_string(),
            metadata: metadata.cloned(),
            created_at: now_ms(),
            sample_count: 0,
        };
        sqlx::query("INSERT INTO subjects (id, collection_id, name, metadata, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&s.id)
            .bind(&s.collection_id)
            .bind(&s.name)
            .bind(metadata.map(|m| m.to_string()))
            .bind(s.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::conflict_or(e, "subject", name))?;
        Ok(s)
    }

    pub async fn subject(&self, collection_id: &str, name: &str) -> Result<Subject> {
        let sql = format!("SELECT {SUBJECT_COLS} FROM subjects s WHERE s.collection_id = $1 AND s.name = $2");
        let row = sqlx::query(&sql)
            .bind(collection_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("subject", name))?;
        subject(&row)
    }

    /// Subjects by name, `limit` at a time after the name `after`, optionally only names starting `prefix`.
    pub async fn subjects(
        &self,
        collection_id: &str,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Subject>> {
        let sql = format!(
            "SELECT {SUBJECT_COLS} FROM subjects s WHERE s.collection_id = $1 \
             AND ($2 = '' OR substr(s.name, 1, length($2)) = $2) AND ($3 = '' OR s.name > $3) \
             ORDER BY s.name LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(collection_id)
            .bind(prefix.unwrap_or(""))
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(subject).collect()
    }

    /// Rename a subject and/or replace its metadata.
    pub async fn update_subject(
        &self,
        collection_id: &str,
        name: &str,
        new_name: Option<&str>,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Subject> {
        let s = self.subject(collection_id, name).await?;
        let mut tx = self.pool.begin().await?;
        if let Some(n) = new_name.filter(|n| *n != name) {
            sqlx::query("UPDATE subjects SET name = $1 WHERE id = $2")
                .bind(n)
                .bind(&s.id)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::conflict_or(e, "subject", n))?;
            let ch = Change::SubjectRenamed { collection: collection_id.into(), subject: s.id.clone(), name: n.into() };
            self.announce(&mut tx, &ch.to_json()).await?;
        }
        if let Some(m) = metadata {
            sqlx::query("UPDATE subjects SET metadata = $1 WHERE id = $2")
                .bind(m.to_string())
                .bind(&s.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.subject(collection_id, new_name.unwrap_or(name)).await
    }

    /// Erase a subject: its embeddings, images and sample rows go in one transaction with it.
    pub async fn delete_subject(&self, collection_id: &str, name: &str) -> Result<Subject> {
        let s = self.subject(collection_id, name).await?;
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM embeddings WHERE sample_id IN (SELECT id FROM samples WHERE subject_id = $1)",
            "DELETE FROM sample_images WHERE sample_id IN (SELECT id FROM samples WHERE subject_id = $1)",
            "DELETE FROM samples WHERE subject_id = $1",
            "DELETE FROM subjects WHERE id = $1",
        ] {
            sqlx::query(sql).bind(&s.id).execute(&mut *tx).await?;
        }
        let ch = Change::SubjectRemoved { collection: collection_id.into(), subject: s.id.clone() };
        self.announce(&mut tx, &ch.to_json()).await?;
        tx.commit().await?;
        self.scrub().await;
        Ok(s)
    }

    // ---- samples ----

    /// Store a sample atomically: its row, its image and its embedding commit together or not at all.
    pub async fn add_sample(
        &self,
        collection_id: &str,
        subject_id: &str,
        new: &NewSample,
        emb: &EmbeddingRow,
    ) -> Result<Sample> {
        let s = Sample {
            id: new_id("smp"),
            subject_id: subject_id.to_string(),
            sha256: new.sha256.clone(),
            content_type: new.content_type.clone(),
            width: new.width,
            height: new.height,
            byte_size: new.image.len() as i64,
            created_at: now_ms(),
            detect: new.detect,
            forgery: new.forgery,
            quality: new.quality.clone(),
        };
        let mut tx = self.pool.begin().await?;
        // The subject may have been erased since the caller looked it up (another request, another replica).
        let subject: Option<String> =
            sqlx::query_scalar("SELECT name FROM subjects WHERE id = $1 AND collection_id = $2")
                .bind(subject_id)
                .bind(collection_id)
                .fetch_optional(&mut *tx)
                .await?;
        if subject.is_none() {
            return Err(StoreError::not_found("subject", subject_id));
        }
        sqlx::query(
            "INSERT INTO samples (id, subject_id, collection_id, sha256, content_type, width, height, byte_size, created_at, detect, kind, quality) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&s.id)
        .bind(&s.subject_id)
        .bind(collection_id)
        .bind(&s.sha256)
        .bind(&s.content_type)
        .bind(s.width)
        .bind(s.height)
        .bind(s.byte_size)
        .bind(s.created_at)
        .bind(s.detect as i64)
        .bind(if s.forgery { "forgery" } else { "genuine" })
        .bind(s.quality.as_ref().map(|q| q.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            // Erased by another replica between the check and the insert.
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::not_found("subject", subject_id),
            _ => StoreError::Db(e),
        })?;
        sqlx::query("INSERT INTO sample_images (sample_id, data) VALUES ($1, $2)")
            .bind(&s.id)
            .bind(&new.image)
            .execute(&mut *tx)
            .await?;
        self.insert_embedding(&mut tx, collection_id, &s.id, emb).await?;
        self.announce(
            &mut tx,
            &Change::SampleAdded { collection: collection_id.into(), sample: s.id.clone() }.to_json(),
        )
        .await?;
        tx.commit().await?;
        Ok(s)
    }

    async fn insert_embedding(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        collection_id: &str,
        sample_id: &str,
        emb: &EmbeddingRow,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO embeddings (sample_id, collection_id, model_id, model_version, dim, vector, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(sample_id)
        .bind(collection_id)
        .bind(&emb.model_id)
        .bind(emb.model_version)
        .bind(emb.dim)
        .bind(&emb.vector)
        .bind(now_ms())
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::conflict_or(e, "embedding", sample_id))?;
        Ok(())
    }

    /// Store the embedding of an already enrolled sample under another model version (re-embedding).
    pub async fn add_embedding(&self, collection_id: &str, sample_id: &str, emb: &EmbeddingRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        self.insert_embedding(&mut tx, collection_id, sample_id, emb).await?;
        self.announce(
            &mut tx,
            &Change::SampleAdded { collection: collection_id.into(), sample: sample_id.into() }.to_json(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn samples(&self, subject_id: &str, after: Option<&str>, limit: i64) -> Result<Vec<Sample>> {
        let sql = format!(
            "SELECT {SAMPLE_COLS} FROM samples WHERE subject_id = $1 AND ($2 = '' OR id > $2) ORDER BY id LIMIT $3"
        );
        let rows =
            sqlx::query(&sql).bind(subject_id).bind(after.unwrap_or("")).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(sample).collect()
    }

    pub async fn sample(&self, subject_id: &str, sample_id: &str) -> Result<Sample> {
        let sql = format!("SELECT {SAMPLE_COLS} FROM samples WHERE subject_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(subject_id)
            .bind(sample_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("sample", sample_id))?;
        sample(&row)
    }

    /// The stored original image of a sample.
    pub async fn sample_image(&self, sample_id: &str) -> Result<Vec<u8>> {
        let row = sqlx::query("SELECT data FROM sample_images WHERE sample_id = $1")
            .bind(sample_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("sample image", sample_id))?;
        get(&row, "data")
    }

    pub async fn delete_sample(&self, collection_id: &str, subject_id: &str, sample_id: &str) -> Result<Sample> {
        let s = self.sample(subject_id, sample_id).await?;
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM embeddings WHERE sample_id = $1",
            "DELETE FROM sample_images WHERE sample_id = $1",
            "DELETE FROM samples WHERE id = $1",
        ] {
            sqlx::query(sql).bind(sample_id).execute(&mut *tx).await?;
        }
        let ch = Change::SampleRemoved { collection: collection_id.into(), sample: sample_id.into() };
        self.announce(&mut tx, &ch.to_json()).await?;
        tx.commit().await?;
        self.scrub().await;
        Ok(s)
    }

    // ---- embeddings ----

    /// Every embedding of a collection under one model version, with its subject.
    pub async fn embeddings(&self, collection_id: &str, model_id: &str, version: i64) -> Result<Vec<StoredEmbedding>> {
        self.embeddings_where(collection_id, model_id, version, None).await
    }

    /// The embedding of one sample under one model version, if stored.
    pub async fn embedding(
        &self,
        collection_id: &str,
        model_id: &str,
        version: i64,
        sample_id: &str,
    ) -> Result<Option<StoredEmbedding>> {
        Ok(self.embeddings_where(collection_id, model_id, version, Some(sample_id)).await?.pop())
    }

    async fn embeddings_where(
        &self,
        collection_id: &str,
        model_id: &str,
        version: i64,
        sample_id: Option<&str>,
    ) -> Result<Vec<StoredEmbedding>> {
        let rows = sqlx::query(
            "SELECT e.sample_id, m.subject_id, s.name AS subject_name, e.vector FROM embeddings e \
             JOIN samples m ON m.id = e.sample_id JOIN subjects s ON s.id = m.subject_id \
             WHERE e.collection_id = $1 AND e.model_id = $2 AND e.model_version = $3 \
             AND ($4 = '' OR e.sample_id = $4) AND m.kind = 'genuine' ORDER BY e.sample_id",
        )
        .bind(collection_id)
        .bind(model_id)
        .bind(version)
        .bind(sample_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredEmbedding {
                    sample_id: get(r, "sample_id")?,
                    subject_id: get(r, "subject_id")?,
                    subject_name: get(r, "subject_name")?,
                    vector: floats(&get::<Vec<u8>>(r, "vector")?)?,
                })
            })
            .collect()
    }

    /// Samples of a collection with no embedding under this model version (to re-embed from their image):
    /// each sample's id and whether it was enrolled with face detection.
    pub async fn samples_missing_embedding(
        &self,
        collection_id: &str,
        model_id: &str,
        version: i64,
    ) -> Result<Vec<(String, bool)>> {
        let rows = sqlx::query(
            "SELECT m.id, m.detect FROM samples m WHERE m.collection_id = $1 AND m.kind = 'genuine' AND NOT EXISTS \
             (SELECT 1 FROM embeddings e WHERE e.sample_id = m.id AND e.model_id = $2 AND e.model_version = $3) \
             ORDER BY m.id",
        )
        .bind(collection_id)
        .bind(model_id)
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((get(r, "id")?, get::<i64>(r, "detect")? != 0))).collect()
    }

    /// How many rows still mention a subject or any of the given samples, in every table (erasure checks).
    pub async fn residue(&self, subject_id: &str, sample_ids: &[String]) -> Result<i64> {
        let mut n: i64 = get(
            &sqlx::query("SELECT (SELECT COUNT(*) FROM subjects WHERE id = $1) + (SELECT COUNT(*) FROM samples WHERE subject_id = $1) AS n")
                .bind(subject_id)
                .fetch_one(&self.pool)
                .await?,
            "n",
        )?;
        for id in sample_ids {
            let row = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM samples WHERE id = $1) + (SELECT COUNT(*) FROM sample_images WHERE sample_id = $1) \
                 + (SELECT COUNT(*) FROM embeddings WHERE sample_id = $1) AS n",
            )
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
            n += get::<i64>(&row, "n")?;
        }
        Ok(n)
    }
}
