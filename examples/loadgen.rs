//! Closed-loop load on a verify endpoint (a tool for `bench/compare`, not a test): `--clients` concurrent
//! clients each POST a multipart pair (`image_a`, `image_b`, files taken in turn from `--images`) back to back
//! for `--secs` seconds after `--warmup-secs`; prints one JSON line with pairs answered per second, the
//! answers by status and latency percentiles. The same client drives the Rust service and the FastAPI one.
//!
//! ```sh
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8099/v1/verify --field detect=false \
//!     --clients 8 --secs 10 chip1.jpg chip2.jpg …
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    clients: usize,
    secs: f64,
    warmup_secs: f64,
    images: Vec<Vec<u8>>,
    /// Extra text fields sent with every pair (`--field detect=false`).
    fields: Vec<(String, String)>,
}

fn args() -> Result<Args, String> {
    let mut a =
        Args { url: String::new(), clients: 8, secs: 10.0, warmup_secs: 2.0, images: Vec::new(), fields: Vec::new() };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = |i: usize| v.get(i + 1).cloned().ok_or(format!("{} needs a value", v[i]));
        match v[i].as_str() {
            "--url" => a.url = val(i)?,
            "--clients" => a.clients = val(i)?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--secs" => a.secs = val(i)?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--field" => {
                let f = val(i)?;
                let (k, v) = f.split_once('=').ok_or(format!("--field {f}: expected NAME=VALUE"))?;
                a.fields.push((k.to_string(), v.to_string()));
            }
            "--warmup-secs" => a.warmup_secs = val(i)?.parse().map_err(|e| format!("--warmup-secs: {e}"))?,
            f => {
                a.images.push(std::fs::read(f).map_err(|e| format!("{f}: {e}"))?);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    if a.url.is_empty() || a.images.len() < 2 {
        return Err(
            "usage: loadgen --url URL [--clients N] [--secs S] [--warmup-secs S] [--field K=V] IMAGE IMAGE…".into()
        );
    }
    Ok(a)
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, u64>,
    latencies_ms: Vec<f64>,
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let client = reqwest::Client::builder().pool_max_idle_per_host(a.clients).build().expect("client");
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup_secs);
    let end = measure_from + Duration::from_secs_f64(a.secs);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (a, client, tally) = (a.clone(), client.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = c;
            while Instant::now() < end {
                let n = a.images.len();
                let (ia, ib) = (a.images[k % n].clone(), a.images[(k + 1) % n].clone());
                k += 1;
                let mut form = reqwest::multipart::Form::new()
                    .part("image_a", reqwest::multipart::Part::bytes(ia).file_name("a.jpg"))
                    .part("image_b", reqwest::multipart::Part::bytes(ib).file_name("b.jpg"));
                for (k, v) in &a.fields {
                    form = form.text(k.clone(), v.clone());
                }
                let t = Instant::now();
                let status = match client.post(&a.url).multipart(form).send().await {
                    Ok(r) => {
                        let s = r.status().as_u16().to_string();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => "error".to_string(),
                };
                let done = Instant::now();
                if t >= measure_from && done <= end {
                    let mut g = tally.lock().expect("tally");
                    *g.statuses.entry(status.clone()).or_default() += 1;
                    if status == "200" {
                        g.latencies_ms.push((done - t).as_secs_f64() * 1e3);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut g = tally.lock().expect("tally");
    g.latencies_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let l = &g.latencies_ms;
        if l.is_empty() {
            0.0
        } else {
            l[((l.len() - 1) as f64 * p).round() as usize]
        }
    };
    let ok = g.latencies_ms.len();
    println!(
        "{}",
        serde_json::json!({
            "url": a.url, "clients": a.clients, "secs": a.secs, "answered_200": ok,
            "pairs_per_second": ok as f64 / a.secs, "statuses": g.statuses,
            "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)},
        })
    );
}
