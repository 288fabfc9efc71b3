//! Soak and overload of a running server (a tool, not a test): verify, enrol and identify with real AT&T
//! photos at a steady rate for `--minutes`, the server's RSS read every 10 s from `/proc/PID/status`; then
//! the capacity (answers per second with `--overload-concurrency` clients back to back), an overload phase
//! (open-loop at 4× that capacity) and a recovery phase at the steady rate again. Prints one JSON
//! summary: per phase the answers by status, latency percentiles (answered 2xx), RSS, and the RSS slope of
//! the steady phase (least squares, MB per hour; over the whole phase and its second half), the spread of RSS
//! around that line, and the server's C heap in use (from `/metrics`) with its slope. `SOAK_SERIES=FILE`
//! writes the steady phase's RSS samples as CSV (seconds, MB). `--churn true` erases every sample right after
//! enrolling it (its answer is the erasure's, 204), so the gallery keeps its size and a rising RSS is not data.
//!
//! ```sh
//! siamese serve --bind 127.0.0.1:8099 --database-url sqlite:///tmp/soak/s.db --work-dir /tmp/soak/work &
//! cargo run --release --example soak -- --base http://127.0.0.1:8099 --pid $! \
//!     --att $SIAMESE_DATA/att_faces --minutes 30 --rate 6 --overload-concurrency 16 --overload-secs 60
//! ```

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Phase {
    statuses: BTreeMap<String, u64>,
    latencies_ms: Vec<f64>,
    rss_mb: Vec<(f64, f64)>,
    /// The server's C heap in use (`siamese_memory_bytes{kind="in_use"}` from `/metrics`), MB.
    heap_mb: Vec<(f64, f64)>,
    retry_after_on_429: u64,
}

struct Args {
    base: String,
    pid: u32,
    att: PathBuf,
    minutes: f64,
    rate: f64,
    overload_concurrency: usize,
    overload_secs: u64,
    recovery_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        base: "http://127.0.0.1:8099".into(),
        pid: 0,
        att: PathBuf::from("att_faces"),
        minutes: 30.0,
        rate: 8.0,
        overload_concurrency: 64,
        overload_secs: 60,
        recovery_secs: 120,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for p in v.chunks(2) {
        let val = p.get(1).cloned().unwrap_or_default();
        match p[0].as_str() {
            "--base" => a.base = val,
            "--pid" => a.pid = val.parse().expect("--pid"),
            "--att" => a.att = val.into(),
            "--minutes" => a.minutes = val.parse().expect("--minutes"),
            "--rate" => a.rate = val.parse().expect("--rate"),
            "--churn" => CHURN.store(val == "true", std::sync::atomic::Ordering::Relaxed),
            "--overload-concurrency" => a.overload_concurrency = val.parse().expect("--overload-concurrency"),
            "--overload-secs" => a.overload_secs = val.parse().expect("--overload-secs"),
            "--recovery-secs" => a.recovery_secs = val.parse().expect("--recovery-secs"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The C heap's bytes in use, from the server's `/metrics`, in MB.
async fn heap_mb(c: &reqwest::Client, base: &str) -> Option<f64> {
    let text = c.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    let line = text.lines().find(|l| l.starts_with("siamese_memory_bytes{kind=\"in_use\"}"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|b| b / 1048576.0)
}

/// `--churn`: every enrolment is followed by the erasure of the sample it made.
static CHURN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn png(att: &std::path::Path, s: u32, k: u32) -> Vec<u8> {
    let img = image::open(att.join(format!("s{s}/{k}.pgm"))).expect("AT&T photo");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// One request of the mix (by `n`): verify a pair, enrol a photo, or identify a photo.
async fn one(c: &reqwest::Client, base: &str, att: &std::path::Path, n: u64) -> (String, f64, bool) {
    let s = 1 + (n % 40) as u32;
    let k = 1 + (n / 40 % 10) as u32;
    let t = Instant::now();
    let part = |b: Vec<u8>| reqwest::multipart::Part::bytes(b).file_name("x.png");
    let r = match n % 3 {
        0 => {
            let form = reqwest::multipart::Form::new()
                .part("image_a", part(png(att, s, k)))
                .part("image_b", part(png(att, s, 1 + k % 10)));
            c.post(format!("{base}/v1/verify")).multipart(form).send().await
        }
        1 => {
            let form = reqwest::multipart::Form::new().part("image", part(png(att, s, k)));
            let url = format!("{base}/v1/collections/faces/subjects/s{s}/samples");
            let r = c.post(&url).multipart(form).send().await;
            match r {
                // Churn: the new sample is erased again, so the gallery keeps its size.
                Ok(r) if CHURN.load(std::sync::atomic::Ordering::Relaxed) && r.status() == 201 => {
                    let v: Value = r.json().await.unwrap_or_default();
                    let id = v["results"][0]["sample"]["id"].as_str().unwrap_or("").to_string();
                    c.delete(format!("{url}/{id}")).send().await
                }
                r => r,
            }
        }
        _ => {
            let form = reqwest::multipart::Form::new().part("image", part(png(att, s, k)));
            c.post(format!("{base}/v1/collections/faces/identify")).multipart(form).send().await
        }
    };
    let ms = t.elapsed().as_secs_f64() * 1e3;
    match r {
        Ok(r) => {
            let retry = r.headers().contains_key("retry-after");
            let st = r.status().as_u16().to_string();
            let _ = r.bytes().await;
            (st, ms, retry)
        }
        Err(e) => (if e.is_timeout() { "client_timeout" } else { "connection_error" }.into(), ms, false),
    }
}

fn record(p: &Mutex<Phase>, (st, ms, retry): (String, f64, bool)) {
    let mut p = p.lock().unwrap();
    if st.starts_with('2') {
        p.latencies_ms.push(ms);
    }
    if st == "429" && retry {
        p.retry_after_on_429 += 1;
    }
    *p.statuses.entry(st).or_default() += 1;
}

/// Requests at `rate` per second for `secs`, RSS every 10 s.
async fn steady(a: &Args, c: &reqwest::Client, secs: f64, start_n: u64, t0: Instant) -> Phase {
    let phase = Arc::new(Mutex::new(Phase::default()));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate));
    let mut next_rss = Instant::now();
    let mut n = start_n;
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        if Instant::now() >= next_rss {
            let t = t0.elapsed().as_secs_f64();
            phase.lock().unwrap().rss_mb.push((t, rss_mb(a.pid)));
            if let Some(h) = heap_mb(c, &a.base).await {
                phase.lock().unwrap().heap_mb.push((t, h));
            }
            next_rss += Duration::from_secs(10);
        }
        let (c, base, att, p) = (c.clone(), a.base.clone(), a.att.clone(), phase.clone());
        tasks.spawn(async move { record(&p, one(&c, &base, &att, n).await) });
        n += 1;
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(phase).ok().unwrap().into_inner().unwrap()
}

/// Capacity: answers per second with `concurrency` clients sending back to back for 15 s.
async fn capacity(a: &Args, c: &reqwest::Client) -> f64 {
    let phase = Arc::new(Mutex::new(Phase::default()));
    let end = Instant::now() + Duration::from_secs(15);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..a.overload_concurrency as u64 {
        let (c, base, att, p) = (c.clone(), a.base.clone(), a.att.clone(), phase.clone());
        tasks.spawn(async move {
            let mut n = 500_000 + w * 10_000;
            while Instant::now() < end {
                record(&p, one(&c, &base, &att, n).await);
                n += 1;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let ok = phase.lock().unwrap().latencies_ms.len();
    ok as f64 / 15.0
}

/// Open-loop requests at `rate` per second for `secs` (what clients do when the service is slower than
/// they are: they keep coming), RSS every 2 s.
async fn overload(a: &Args, c: &reqwest::Client, rate: f64, t0: Instant) -> Phase {
    let phase = Arc::new(Mutex::new(Phase::default()));
    let end = Instant::now() + Duration::from_secs(a.overload_secs);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut next_rss = Instant::now();
    let mut n = 1_000_000u64;
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        if Instant::now() >= next_rss {
            phase.lock().unwrap().rss_mb.push((t0.elapsed().as_secs_f64(), rss_mb(a.pid)));
            next_rss += Duration::from_secs(2);
        }
        let (c, base, att, p) = (c.clone(), a.base.clone(), a.att.clone(), phase.clone());
        tasks.spawn(async move { record(&p, one(&c, &base, &att, n).await) });
        n += 1;
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    phase.lock().unwrap().rss_mb.push((t0.elapsed().as_secs_f64(), rss_mb(a.pid)));
    Arc::try_unwrap(phase).ok().unwrap().into_inner().unwrap()
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Least-squares slope of RSS over time, MB per hour.
fn slope_mb_per_hour(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let (num, den) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    num / den * 3600.0
}

fn summary(mut p: Phase) -> Value {
    let rss: Vec<f64> = p.rss_mb.iter().map(|r| r.1).collect();
    json!({
        "statuses": p.statuses,
        "answers": p.statuses.values().sum::<u64>(),
        "5xx": p.statuses.iter().filter(|(k, _)| k.starts_with('5')).map(|(_, v)| v).sum::<u64>(),
        "429_with_retry_after": p.retry_after_on_429,
        "p50_ms": pct(&mut p.latencies_ms, 0.50),
        "p99_ms": pct(&mut p.latencies_ms, 0.99),
        "rss_mb_first": rss.first(),
        "rss_mb_last": rss.last(),
        "rss_mb_max": rss.iter().cloned().fold(f64::NAN, f64::max),
    })
}

#[tokio::main]
async fn main() {
    let a = args();
    assert!(a.pid > 0, "--pid of the server is needed for its RSS");
    let c = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    for s in 1..=40 {
        let _ = c
            .post(format!("{}/v1/collections/faces/subjects", a.base))
            .json(&json!({"name": format!("s{s}")}))
            .send()
            .await;
    }
    let t0 = Instant::now();
    let warm = steady(&a, &c, 30.0, 0, t0).await;
    let soak = steady(&a, &c, a.minutes * 60.0, 10_000, t0).await;
    let slope = slope_mb_per_hour(&soak.rss_mb);
    let rss_points = soak.rss_mb.len();
    let half = &soak.rss_mb[rss_points / 2..];
    let (slope_second_half, heap_slope) = (slope_mb_per_hour(half), slope_mb_per_hour(&soak.heap_mb));
    let heap = (soak.heap_mb.first().map(|h| h.1), soak.heap_mb.last().map(|h| h.1));
    // Residuals around the fitted line: the noise a slope is compared with.
    let noise = {
        let n = soak.rss_mb.len() as f64;
        let (mx, my) =
            (soak.rss_mb.iter().map(|p| p.0).sum::<f64>() / n, soak.rss_mb.iter().map(|p| p.1).sum::<f64>() / n);
        let b = slope / 3600.0;
        (soak.rss_mb.iter().map(|(x, y)| (y - my - b * (x - mx)).powi(2)).sum::<f64>() / n).sqrt()
    };
    if let Ok(path) = std::env::var("SOAK_SERIES") {
        let csv: String = soak.rss_mb.iter().map(|(t, r)| format!("{t:.0},{r:.1}\n")).collect();
        std::fs::write(path, csv).expect("SOAK_SERIES");
    }
    let cap = capacity(&a, &c).await;
    let over = overload(&a, &c, 4.0 * cap, t0).await;
    let after = steady(&a, &c, a.recovery_secs as f64, 20_000, t0).await;
    let out = json!({
        "rate_per_s": a.rate,
        "minutes": a.minutes,
        "capacity_per_s": cap,
        "overload_rate_per_s": 4.0 * cap,
        "warm_up": summary(warm),
        "soak": summary(soak),
        "soak_rss_slope_mb_per_hour": slope,
        "soak_rss_samples": rss_points,
        "soak_rss_slope_second_half_mb_per_hour": slope_second_half,
        "soak_rss_residual_sd_mb": noise,
        "soak_heap_in_use_mb_first_last": heap,
        "soak_heap_in_use_slope_mb_per_hour": heap_slope,
        "overload": summary(over),
        "recovery": summary(after),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
