-- Model versions, the active version of each model, retrain jobs, and forgery samples.

-- A sample is `genuine` (a reference of its subject) or a skilled `forgery` of its subject's signature: kept
-- for training as a hard negative, never a reference for verify or identify.
ALTER TABLE samples ADD COLUMN kind TEXT NOT NULL DEFAULT 'genuine';

-- A version's card is JSON text; its weights are the safetensors bytes (NULL for a version seeded from the
-- `models/` folder, which every replica ships).

CREATE TABLE model_versions (
    model_id       TEXT NOT NULL,
    version        BIGINT NOT NULL,
    card           TEXT NOT NULL,
    weights        BYTEA,
    parent_version BIGINT,
    job_id         TEXT,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (model_id, version)
);

-- Which version of a model the service serves (one row per model id; absent: the folder's version).
CREATE TABLE active_models (
    model_id     TEXT PRIMARY KEY,
    version      BIGINT NOT NULL,
    activated_at BIGINT NOT NULL
);

-- Retrain jobs. `params`, `history` and `report` are JSON text.
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    state             TEXT NOT NULL,
    model_id          TEXT NOT NULL,
    params            TEXT NOT NULL,
    history           TEXT NOT NULL,
    error             TEXT,
    candidate_version BIGINT,
    report            TEXT,
    promoted          BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    -- Unix milliseconds of the running job's last sign of life (a replica that stops stops renewing it).
    heartbeat         BIGINT
);
CREATE INDEX jobs_state ON jobs(state, created_at);

-- Files a job produced (the evaluation gate's plots).
CREATE TABLE job_files (
    job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    data         BYTEA NOT NULL,
    PRIMARY KEY (job_id, name)
);
