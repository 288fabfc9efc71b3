//! How often enrolment quality control catches a skilled forgery slipped among a writer's references (a
//! tool, not a test): against a running server with its defaults, for every writer of CEDAR-layout sets
//! (`full_org/original_<w>_<n>.png`, `full_forg/forgeries_<w>_<n>.png`), a new subject of a new signature
//! collection gets its first 10 genuine signatures and one skilled forgery in one upload (flag policy).
//! Counts per set: forgeries flagged `inconsistent`, genuine references flagged (false flags), writers.
//!
//! ```sh
//! siamese serve --bind 127.0.0.1:8099 --database-url sqlite:///tmp/q/q.db &
//! cargo run --release --example quality_eval -- http://127.0.0.1:8099 \
//!     cedar:$SIAMESE_DATA/cedar-dev:41-45 bhsig:$SIAMESE_DATA/bhsig-bengali sigcomp:$SIAMESE_DATA/sigcomp2011-dutch
//! ```
//! A set is `label:folder[:first-last]` (writer numbers; all writers when absent).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Writer → its files, ordered by the sample number.
fn writers(dir: &Path, prefix: &str) -> BTreeMap<u32, Vec<PathBuf>> {
    let mut out: BTreeMap<u32, Vec<(u32, PathBuf)>> = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("folder") {
        let p = e.expect("entry").path();
        let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        let mut it = rest.split('_');
        if let (Some(Ok(w)), Some(Ok(n))) = (it.next().map(str::parse::<u32>), it.next().map(str::parse::<u32>)) {
            out.entry(w).or_default().push((n, p));
        }
    }
    out.into_iter()
        .map(|(w, mut v)| {
            v.sort();
            (w, v.into_iter().map(|x| x.1).collect())
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = args.first().expect("server URL").trim_end_matches('/').to_string();
    let c = reqwest::Client::new();
    let mut report = Vec::new();
    for (k, spec) in args[1..].iter().enumerate() {
        let mut parts = spec.splitn(3, ':');
        let (label, folder) = (parts.next().unwrap(), PathBuf::from(parts.next().expect("label:folder")));
        let range = parts.next().map(|r| {
            let (a, b) = r.split_once('-').expect("first-last");
            (a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap())
        });
        let genuine = writers(&folder.join("full_org"), "original_");
        let forged = writers(&folder.join("full_forg"), "forgeries_");
        let coll = format!("qc-{label}-{k}-{}", std::process::id());
        let r =
            c.post(format!("{base}/v1/collections")).json(&json!({"name": coll, "modality": "signature"})).send().await;
        assert_eq!(r.unwrap().status(), 201, "collection");
        let (mut n, mut caught, mut dup, mut refs, mut false_flags) = (0, 0, 0, 0, 0);
        for (w, g) in &genuine {
            if range.is_some_and(|(a, b)| *w < a || *w > b) || g.len() < 10 {
                continue;
            }
            let Some(f) = forged.get(w).and_then(|f| f.first()) else { continue };
            let subject = format!("w{w}");
            let r =
                c.post(format!("{base}/v1/collections/{coll}/subjects")).json(&json!({"name": subject})).send().await;
            assert_eq!(r.unwrap().status(), 201);
            let mut form = reqwest::multipart::Form::new();
            for p in g.iter().take(10).chain(std::iter::once(f)) {
                let part = reqwest::multipart::Part::bytes(std::fs::read(p).unwrap()).file_name("s.png");
                form = form.part("image", part);
            }
            let r =
                c.post(format!("{base}/v1/collections/{coll}/subjects/{subject}/samples")).multipart(form).send().await;
            let v: Value = r.unwrap().json().await.unwrap();
            let results = v["results"].as_array().expect("results");
            let flags = |r: &Value| r["quality"]["flags"].as_array().cloned().unwrap_or_default();
            let inconsistent = |r: &Value| flags(r).iter().any(|f| f == "inconsistent");
            n += 1;
            caught += inconsistent(&results[10]) as u32;
            dup += flags(&results[10]).iter().any(|f| f == "duplicate") as u32;
            refs += 10;
            false_flags += results[..10].iter().filter(|r| inconsistent(r)).count() as u32;
        }
        let _ = c.delete(format!("{base}/v1/collections/{coll}")).send().await;
        let line = json!({
            "set": label,
            "writers": n,
            "forgery_flagged_inconsistent": caught,
            "forgery_flag_rate": caught as f64 / n.max(1) as f64,
            "forgery_flagged_duplicate": dup,
            "genuine_references": refs,
            "genuine_flagged_inconsistent": false_flags,
            "genuine_false_flag_rate": false_flags as f64 / refs.max(1) as f64,
        });
        eprintln!("{line}");
        report.push(line);
    }
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
