//! `siamese jobs list|show|submit|cancel|resume`: retrain jobs of a running server, over its HTTP API.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args, Debug)]
pub struct JobsArgs {
    /// The server's base URL.
    #[arg(long, env = "SIAMESE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API key with the `admin` scope (when the server enforces keys).
    #[arg(long, env = "SIAMESE_API_KEY")]
    pub key: Option<String>,
    #[command(subcommand)]
    pub action: JobsAction,
}

#[derive(Subcommand, Debug)]
pub enum JobsAction {
    /// Jobs, newest first: id, state, model, epochs done, candidate version.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One job as JSON (state, history, timings, error, candidate), and its report when it has one.
    Show { id: String },
    /// Queue a job: its parameters as JSON (`POST /v1/jobs`), e.g. '{"collection":"faces","epochs":3}'.
    Submit { params: String },
    /// Cancel a queued or running job.
    Cancel { id: String },
    /// Queue an interrupted or cancelled job again.
    Resume { id: String },
}

pub fn jobs(a: JobsArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run(a))
}

async fn run(a: JobsArgs) -> Result<()> {
    let client = reqwest::Client::new();
    let base = a.url.trim_end_matches('/').to_string();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut r = client.request(method, format!("{base}{path}"));
        if let Some(k) = &a.key {
            r = r.header("x-api-key", k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let base = base.clone();
        async move {
            let resp = r.send().await.with_context(|| format!("cannot reach the server at {base}"))?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{status}: {}", v["detail"].as_str().unwrap_or(&v.to_string()));
            }
            Ok(v)
        }
    };
    use reqwest::Method;
    match a.action {
        JobsAction::List { limit } => {
            let v = call(Method::GET, format!("/v1/jobs?limit={limit}"), None).await?;
            println!("{:<40} {:<12} {:<22} {:>6} {:>9}", "id", "state", "model", "epochs", "candidate");
            for j in v["jobs"].as_array().into_iter().flatten() {
                let cand = j["candidate_version"].as_i64().map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                println!(
                    "{:<40} {:<12} {:<22} {:>6} {:>9}",
                    j["id"].as_str().unwrap_or(""),
                    j["state"].as_str().unwrap_or(""),
                    j["model"].as_str().unwrap_or(""),
                    j["history"].as_array().map_or(0, Vec::len),
                    cand
                );
            }
        }
        JobsAction::Show { id } => {
            let mut v = call(Method::GET, format!("/v1/jobs/{id}"), None).await?;
            if v["state"] == "succeeded" {
                v["report"] = call(Method::GET, format!("/v1/jobs/{id}/report"), None).await?;
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        JobsAction::Submit { params } => {
            let body: Value = serde_json::from_str(&params).context("the parameters must be a JSON object")?;
            let v = call(Method::POST, "/v1/jobs".into(), Some(body)).await?;
            println!("{}", v["id"].as_str().unwrap_or(""));
        }
        JobsAction::Cancel { id } => {
            let v = call(Method::DELETE, format!("/v1/jobs/{id}"), None).await?;
            println!("{} {}", v["id"].as_str().unwrap_or(""), v["state"].as_str().unwrap_or(""));
        }
        JobsAction::Resume { id } => {
            let v = call(Method::POST, format!("/v1/jobs/{id}/resume"), None).await?;
            println!("{} {}", v["id"].as_str().unwrap_or(""), v["state"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}
