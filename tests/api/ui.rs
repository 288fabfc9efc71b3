//! The web console in a real headless Chromium (Debian's `chromium` driven through `chromedriver`, installed
//! by `scripts/bootstrap-browser.sh`), against the real server on loopback: verify (same, different, no
//! face), enrol a subject with per-file results, identify, erase, the API-key prompt, a retrain job's live
//! chart and report, a phone-width layout, and the browser's own network log (no host but the service).
//! Screenshots of every screen go to `target/ui-screenshots/` (or `SIAMESE_SCREENSHOTS`).
//! Missing browser: the tests fail when `SIAMESE_REQUIRE_DATA` is set (CI), else they say so and skip.

use crate::common::{real_data, write_synthetic_dataset};
use crate::helpers::{create_key, spawn_app_with, Options};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A chromedriver process and a headless Chromium session through it.
struct Browser {
    client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

/// Start chromedriver and a headless Chromium of `width × height`; `None` (skip) only where the browser
/// is not required.
async fn browser(test: &str, width: u32, height: u32) -> Option<Browser> {
    let (Some(chromium), Some(driver)) = (which("chromium"), which("chromedriver")) else {
        let msg = format!("{test}: chromium and chromedriver not found (scripts/bootstrap-browser.sh installs them)");
        if std::env::var_os("SIAMESE_REQUIRE_DATA").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED {msg}");
        if let Some(log) = std::env::var_os("SIAMESE_SKIP_LOG") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
            writeln!(f, "SKIPPED {msg}").unwrap();
        }
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     format!("--window-size={width},{height}"), "--no-first-run", "--disable-sync",
                     "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                     "--hide-scrollbars", "--force-device-scale-factor=1"],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({ "performance": "ALL", "browser": "ALL" }));
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    let client = loop {
        let mut b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        match b.capabilities(caps.clone()).connect(&url).await {
            Ok(c) => break c,
            Err(e) if t.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    };
    Some(Browser { client, driver })
}

/// ChromeDriver's log of one kind (`performance`: DevTools network events; `browser`: the console).
#[derive(Debug)]
struct GetLog(&'static str);

impl fantoccini::wd::WebDriverCompatibleCommand for GetLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "type": self.0 }).to_string()))
    }
}

/// Every URL the page requested so far, from the browser's DevTools network log.
async fn requested_urls(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(GetLog("performance")).await.expect("performance log");
    let mut urls = Vec::new();
    for entry in log.as_array().expect("log entries") {
        let msg: Value = serde_json::from_str(entry["message"].as_str().unwrap_or("{}")).unwrap_or_default();
        if msg["message"]["method"] == "Network.requestWillBeSent" {
            if let Some(u) = msg["message"]["params"]["request"]["url"].as_str() {
                urls.push(u.to_string());
            }
        }
    }
    urls
}

/// Errors the page wrote to its console (a script error fails the test).
async fn console_errors(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(GetLog("browser")).await.expect("browser log");
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        // Refused API calls show up as failed loads; the tests provoke some on purpose.
        .filter(|m| !m.contains("the server responded with a status of"))
        .collect()
}

/// Wait until `js` (an expression) is truthy in the page.
async fn wait_js(c: &Client, js: &str, limit: Duration, what: &str) {
    let t = Instant::now();
    loop {
        let v = c.execute(&format!("return !!({js});"), vec![]).await.expect("script runs");
        if v == Value::Bool(true) {
            return;
        }
        if t.elapsed() > limit {
            let shot = c.screenshot().await.unwrap_or_default();
            let p = shots_dir().join(format!("FAILED-{}.png", what.replace(' ', "-")));
            let _ = std::fs::write(&p, shot);
            let text = c.execute("return document.getElementById('view').innerText", vec![]).await.unwrap_or_default();
            panic!("timed out waiting for {what} ({js}); page says: {text}; screenshot {}", p.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

async fn type_into(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// Put files into a file input (several: one path per line, as ChromeDriver takes them).
async fn pick_files(c: &Client, css: &str, files: &[&Path]) {
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    c.find(Locator::Css(css)).await.unwrap().send_keys(&paths.join("\n")).await.unwrap();
}

async fn goto(c: &Client, base: &str, hash: &str) {
    // A hash change re-renders without a page load: forget the old screen's mark first.
    c.execute("document.getElementById('view')?.removeAttribute('data-ready')", vec![]).await.unwrap();
    c.goto(&format!("{base}/{hash}")).await.unwrap();
    wait_js(c, "document.getElementById('view').dataset.ready === 'true'", Duration::from_secs(20), hash).await;
}

fn shots_dir() -> PathBuf {
    let d = std::env::var_os("SIAMESE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.len() > 1000, "a screenshot of {name}");
    std::fs::write(shots_dir().join(name), png).unwrap();
}

/// The page requested nothing but the service itself (and its own blob:/data: pictures).
async fn assert_only_own_host(c: &Client, base: &str) {
    let urls = requested_urls(c).await;
    assert!(
        urls.iter().any(|u| u.starts_with(&format!("{base}/ui/app.js"))),
        "the log shows the page's loads: {urls:?}"
    );
    let foreign: Vec<&String> = urls
        .iter()
        .filter(|u| !(u.starts_with(&format!("{base}/")) || u.starts_with("data:") || u.starts_with("blob:")))
        .collect();
    assert!(foreign.is_empty(), "the console requested other hosts: {foreign:?}");
}

/// AT&T photo `s{s}/{k}.pgm` as a PNG file in `dir` (browsers show PNG; the server reads both).
fn att_png(att: &Path, dir: &Path, s: u32, k: u32) -> PathBuf {
    let img = image::open(att.join(format!("s{s}/{k}.pgm"))).unwrap();
    let p = dir.join(format!("s{s}-{k}.png"));
    img.save(&p).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_verifies_enrols_identifies_and_erases_in_chromium() {
    let test = "console_verifies_enrols_identifies_and_erases_in_chromium";
    let Some(att) = real_data("att_faces", test) else { return };
    let Some(b) = browser(test, 1280, 800).await else { return };
    let c = &b.client;
    // The served defaults: the dlib face model with MTCNN detection.
    let app = spawn_app_with(Options { default_model: None, ..Options::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, other) =
        (att_png(&att, dir.path(), 1, 1), att_png(&att, dir.path(), 1, 2), att_png(&att, dir.path(), 2, 1));
    let blank = dir.path().join("blank.png");
    image::GrayImage::from_pixel(200, 200, image::Luma([128])).save(&blank).unwrap();

    // Verify: one person.
    goto(c, &app.base, "#/verify").await;
    pick_files(c, "#verify-file-a", &[&a1]).await;
    pick_files(c, "#verify-file-b", &[&a2]).await;
    click(c, "#verify-run").await;
    wait_js(c, "document.querySelector('#verdict')", Duration::from_secs(30), "a verdict").await;
    assert_eq!(
        c.find(Locator::Css("#verdict")).await.unwrap().attr("data-verdict").await.unwrap().as_deref(),
        Some("same")
    );
    assert!(text(c, "#verdict").await.contains("Same person"));
    let d: f32 = text(c, "#verify-distance").await.split_whitespace().next().unwrap().parse().unwrap();
    assert!(d > 0.0 && d < 0.6, "distance shown: {d}");
    // The faces found are drawn on both pictures, and the encoder's chips are shown.
    wait_js(
        c,
        "document.querySelectorAll('canvas[data-face=drawn]').length === 2",
        Duration::from_secs(5),
        "face boxes",
    )
    .await;
    wait_js(
        c,
        "[...document.querySelectorAll('#verify-chips img')].every(i => i.complete && i.naturalWidth === 150)",
        Duration::from_secs(5),
        "the aligned chips",
    )
    .await;
    screenshot(c, "verify-same.png").await;

    // Two people.
    pick_files(c, "#verify-file-b", &[&other]).await;
    click(c, "#verify-run").await;
    wait_js(c, "document.querySelector('#verdict[data-verdict=different]')", Duration::from_secs(30), "'different'")
        .await;
    assert!(text(c, "#verdict").await.contains("Different people"));
    screenshot(c, "verify-different.png").await;

    // No face: the problem's detail is shown, and the old verdict is gone.
    pick_files(c, "#verify-file-b", &[&blank]).await;
    click(c, "#verify-run").await;
    wait_js(c, "document.querySelector('#verify-error .error[data-code=no_face]')", Duration::from_secs(30), "no_face")
        .await;
    assert!(text(c, "#verify-error").await.contains("image_b: no face was found in the image"));
    assert!(c.find(Locator::Css("#verdict")).await.is_err());
    screenshot(c, "verify-no-face.png").await;

    // A subject: create, upload three photos and a blank one (per-file results), browse its samples.
    goto(c, &app.base, "#/collections/faces").await;
    type_into(c, "#subject-name", "Ada Lovelace").await;
    click(c, "#subject-create").await;
    wait_js(c, "document.querySelector('#upload-files')", Duration::from_secs(10), "the subject page").await;
    assert_eq!(text(c, "#subject-title").await, "Ada Lovelace");
    let enrol: Vec<PathBuf> = (1..=3).map(|k| att_png(&att, dir.path(), 3, k)).collect();
    let mut files: Vec<&Path> = enrol.iter().map(PathBuf::as_path).collect();
    files.push(&blank);
    pick_files(c, "#upload-files", &files).await;
    click(c, "#upload-run").await;
    wait_js(c, "document.querySelector('#upload-summary')", Duration::from_secs(60), "upload results").await;
    assert_eq!(text(c, "#upload-summary").await, "3 stored, 1 refused");
    let refused = text(c, "#upload-result li[data-status=failed]").await;
    assert!(refused.starts_with("photo 4 (blank.png):") && refused.contains("no face"), "{refused}");
    wait_js(c, "document.querySelectorAll('#samples img').length === 3 && [...document.querySelectorAll('#samples img')].every(i => i.complete && i.naturalWidth === 92)",
        Duration::from_secs(10), "three thumbnails").await;
    screenshot(c, "subject.png").await;
    // Every file refused (422): the per-file reasons are still shown.
    pick_files(c, "#upload-files", &[&blank]).await;
    click(c, "#upload-run").await;
    wait_js(
        c,
        "document.querySelector('#upload-summary')?.textContent === '0 stored, 1 refused'",
        Duration::from_secs(30),
        "an all-refused upload",
    )
    .await;
    assert!(text(c, "#upload-result li[data-status=failed]").await.contains("no face"));

    // Verify a probe against the subject.
    let probe = att_png(&att, dir.path(), 3, 4);
    pick_files(c, "#subject-verify-file", &[&probe]).await;
    click(c, "#subject-verify-run").await;
    wait_js(
        c,
        "document.querySelector('#subject-verdict[data-verdict=same]')",
        Duration::from_secs(30),
        "subject verdict",
    )
    .await;

    // Identify the fourth photo among all subjects (a second subject competes).
    let r =
        app.client.post(app.url("/v1/collections/faces/subjects")).json(&json!({ "name": "s4" })).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let s4 = att_png(&att, dir.path(), 4, 1);
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(std::fs::read(&s4).unwrap()).file_name("s4.png"));
    let r = app.client.post(app.url("/v1/collections/faces/subjects/s4/samples")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 201);
    goto(c, &app.base, "#/collections/faces").await;
    pick_files(c, "#identify-file", &[&probe]).await;
    click(c, "#identify-run").await;
    wait_js(c, "document.querySelector('#identify-match')", Duration::from_secs(30), "identify result").await;
    let m = c.find(Locator::Css("#identify-match")).await.unwrap();
    assert_eq!(m.attr("data-match").await.unwrap().as_deref(), Some("Ada Lovelace"), "{}", m.text().await.unwrap());
    assert_eq!(c.find_all(Locator::Css("#identify-result tr.candidate")).await.unwrap().len(), 2);
    screenshot(c, "identify.png").await;

    // Quality control: s4's photo uploaded as Ada's is flagged at upload and listed by the audit.
    goto(c, &app.base, "#/collections/faces/subjects/Ada%20Lovelace").await;
    pick_files(c, "#upload-files", &[&s4]).await;
    click(c, "#upload-run").await;
    wait_js(c, "document.querySelector('#upload-summary')", Duration::from_secs(60), "upload results").await;
    let flag = text(c, "#upload-result li[data-status=stored] .flag[data-verdict=inconsistent]").await;
    assert!(flag.contains("flagged inconsistent") && flag.contains("likely mislabelled"), "{flag}");
    goto(c, &app.base, "#/collections/faces").await;
    click(c, "#audit-run").await;
    wait_js(c, "document.querySelector('#audit-summary')", Duration::from_secs(30), "the audit").await;
    let row = text(c, "#audit-samples tr[data-verdict=inconsistent]").await;
    assert!(row.starts_with("Ada Lovelace"), "{row}");
    screenshot(c, "audit.png").await;

    // A phone-width screen: nothing wider than the window.
    c.set_window_size(390, 844).await.unwrap();
    goto(c, &app.base, "#/verify").await;
    let fits = "[...document.querySelectorAll('#view *')].every(e => e.getBoundingClientRect().right <= document.documentElement.clientWidth + 0.5)";
    wait_js(c, fits, Duration::from_secs(5), "everything within the phone's width").await;
    screenshot(c, "verify-phone.png").await;
    c.set_window_size(1280, 800).await.unwrap();

    // Erase the subject, with a confirmation first.
    goto(c, &app.base, "#/collections/faces/subjects/Ada%20Lovelace").await;
    click(c, "#subject-erase").await;
    wait_js(c, "document.querySelector('#subject-erase-confirm')", Duration::from_secs(5), "the confirmation").await;
    screenshot(c, "subject-erase.png").await;
    click(c, "#subject-erase-confirm").await;
    wait_js(
        c,
        "location.hash === '#/collections/faces' && document.getElementById('view').dataset.view === 'viewCollection' && document.getElementById('view').dataset.ready === 'true'",
        Duration::from_secs(10),
        "back to the collection",
    )
    .await;
    let r = app.client.get(app.url("/v1/collections/faces/subjects/Ada%20Lovelace")).send().await.unwrap();
    assert_eq!(r.status(), 404, "the subject is erased");

    // Every control has a label the browser can name.
    let unlabelled = c
        .execute(
            "return [...document.querySelectorAll('input, select, button')].filter(e => !e.hidden && !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim())).map(e => e.id || e.outerHTML)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, json!([]), "controls without an accessible name");
    assert_only_own_host(c, &app.base).await;
    assert_eq!(console_errors(c).await, Vec::<String>::new(), "script errors in the page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_asks_for_a_key_and_charts_a_retrain_job_live() {
    let test = "console_asks_for_a_key_and_charts_a_retrain_job_live";
    let Some(b) = browser(test, 1280, 800).await else { return };
    let c = &b.client;
    // Real faces when the data is there (AT&T, folder per person), else generated identities.
    let root = tempfile::tempdir().unwrap();
    let (data_root, dataset) = match std::env::var_os("SIAMESE_DATA").map(PathBuf::from) {
        Some(d) if d.join("att_faces").is_dir() => (d, "att_faces"),
        _ => {
            write_synthetic_dataset(&root.path().join("ids"), 400, 8, 4);
            (root.path().to_path_buf(), "ids")
        }
    };
    let app = spawn_app_with(Options {
        collections: vec!["faces=face:face-att-small-v1".parse().unwrap()],
        data_root: Some(data_root),
        ..Options::default()
    })
    .await;
    // Keys exist: the page must ask for one.
    let admin = create_key(app.url("/v1/admin/keys"), &app.client, "admin", None).await;
    let key = admin["key"].as_str().expect("a new key").to_string();
    let verify_only = create_key(app.url("/v1/admin/keys"), &app.client, "verify", Some(&key)).await;

    c.goto(&format!("{}/#/models", app.base)).await.unwrap();
    wait_js(c, "document.getElementById('key-dialog').open", Duration::from_secs(10), "the key prompt").await;
    assert!(text(c, "#view").await.contains("Not signed in (401)"));
    screenshot(c, "key-prompt.png").await;
    // A verify-only key: the models screen works, starting a job is refused in plain words.
    type_into(c, "#key-input", verify_only["key"].as_str().unwrap()).await;
    click(c, "#key-save").await;
    wait_js(c, "document.querySelector('#job-start')", Duration::from_secs(10), "the models screen").await;
    type_into(c, "#job-dataset", dataset).await;
    click(c, "#job-start").await;
    let refused = "#job-start-error .error[data-status=\"403\"]";
    wait_js(c, &format!("document.querySelector('{refused}')"), Duration::from_secs(10), "403 shown").await;
    assert!(text(c, refused).await.starts_with("Not allowed (403)"));
    // The admin key: start a small job and watch its epochs arrive.
    c.execute("document.getElementById('job-start').dataset.old = '1'", vec![]).await.unwrap();
    click(c, "#key-button").await;
    wait_js(c, "document.getElementById('key-dialog').open", Duration::from_secs(5), "the key dialog").await;
    type_into(c, "#key-input", &key).await;
    click(c, "#key-save").await;
    wait_js(
        c,
        "document.querySelector('#job-start:not([data-old])') && document.getElementById('view').dataset.ready === 'true'",
        Duration::from_secs(10),
        "the models screen again",
    )
    .await;
    assert!(!text(c, "#view").await.contains("Not allowed"), "the admin key may list jobs");
    c.find(Locator::Css("#job-model")).await.unwrap().select_by_value("face-att-small-v1").await.unwrap();
    type_into(c, "#job-dataset", dataset).await;
    type_into(c, "#job-epochs", "3").await;
    type_into(c, "#job-batch-pairs", "16").await;
    click(c, "#job-start").await;
    wait_js(
        c,
        "location.hash.startsWith('#/jobs/') && document.querySelector('#job-chart svg')",
        Duration::from_secs(10),
        "the job page",
    )
    .await;
    wait_js(
        c,
        "document.querySelectorAll('#job-chart circle.pt-eer').length >= 1",
        Duration::from_secs(180),
        "an epoch on the chart",
    )
    .await;
    screenshot(c, "job-chart.png").await;
    wait_js(
        c,
        "document.querySelector('#job-state[data-state=succeeded]')",
        Duration::from_secs(300),
        "the job to succeed",
    )
    .await;
    assert_eq!(c.find_all(Locator::Css("#job-chart circle.pt-loss")).await.unwrap().len(), 3, "one point per epoch");
    wait_js(c, "document.querySelectorAll('#job-report img').length === 3 && [...document.querySelectorAll('#job-report img')].every(i => i.complete && i.naturalWidth > 100)",
        Duration::from_secs(20), "the report's pictures").await;
    c.set_window_size(1280, 1500).await.unwrap();
    screenshot(c, "job-report.png").await;
    c.set_window_size(1280, 800).await.unwrap();
    // The candidate is in the registry screen, with a button to activate (or roll back).
    goto(c, &app.base, "#/models").await;
    wait_js(
        c,
        "document.querySelector('#activate-face-att-small-v1-2, #activate-face-att-small-v1-1')",
        Duration::from_secs(10),
        "an activate button",
    )
    .await;
    screenshot(c, "models.png").await;
    assert_only_own_host(c, &app.base).await;
    assert_eq!(console_errors(c).await, Vec::<String>::new(), "script errors in the page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_handles_signatures_in_the_same_screens() {
    let test = "console_handles_signatures_in_the_same_screens";
    let Some(cedar) = real_data("cedar-dev", test) else { return };
    let Some(b) = browser(test, 1280, 800).await else { return };
    let c = &b.client;
    let app = spawn_app_with(Options {
        default_model: None,
        collections: vec!["faces=face".parse().unwrap(), "signatures=signature".parse().unwrap()],
        ..Options::default()
    })
    .await;
    let genuine = |w: u32, k: u32| cedar.join(format!("full_org/original_{w}_{k}.png"));
    let forgery = |w: u32, k: u32| cedar.join(format!("full_forg/forgeries_{w}_{k}.png"));

    // Verify two scans of one writer with the signature model: the page shows what the API answers.
    let expected: Value = app
        .verify_multipart(
            std::fs::read(genuine(41, 1)).unwrap(),
            std::fs::read(genuine(41, 2)).unwrap(),
            &[("model", "signature-cedar-v1")],
        )
        .await
        .json()
        .await
        .unwrap();
    goto(c, &app.base, "#/verify").await;
    c.find(Locator::Css("#verify-model")).await.unwrap().select_by_value("signature-cedar-v1").await.unwrap();
    pick_files(c, "#verify-file-a", &[&genuine(41, 1)]).await;
    pick_files(c, "#verify-file-b", &[&genuine(41, 2)]).await;
    click(c, "#verify-run").await;
    wait_js(c, "document.querySelector('#verdict')", Duration::from_secs(30), "a verdict").await;
    let same = expected["verified"].as_bool().unwrap();
    assert!(text(c, "#verdict").await.contains(if same { "Same writer" } else { "Different writers" }));
    let shown = text(c, "#verify-distance").await;
    assert!(shown.starts_with(&format!("{:.4}", expected["distance"].as_f64().unwrap())), "{shown} vs {expected}");
    assert!(text(c, "#verify-result").await.contains("signature-cedar-v1 v"));
    wait_js(c, "document.querySelectorAll('#verify-chips img').length === 2", Duration::from_secs(5), "the chips")
        .await;
    screenshot(c, "signature-verify.png").await;

    // A signature subject: genuine scans and a skilled forgery (the kind is chosen on the page).
    goto(c, &app.base, "#/collections/signatures").await;
    type_into(c, "#subject-name", "w42").await;
    click(c, "#subject-create").await;
    wait_js(c, "document.querySelector('#upload-kind')", Duration::from_secs(10), "the signature subject page").await;
    let scans: Vec<PathBuf> = (1..=3).map(|k| genuine(42, k)).collect();
    pick_files(c, "#upload-files", &scans.iter().map(PathBuf::as_path).collect::<Vec<_>>()).await;
    click(c, "#upload-run").await;
    wait_js(c, "document.querySelector('#upload-summary')", Duration::from_secs(60), "upload results").await;
    assert_eq!(text(c, "#upload-summary").await, "3 stored, 0 refused");
    c.find(Locator::Css("#upload-kind")).await.unwrap().select_by_value("forgery").await.unwrap();
    pick_files(c, "#upload-files", &[&forgery(42, 1)]).await;
    click(c, "#upload-run").await;
    wait_js(
        c,
        "document.querySelector('#upload-summary')?.textContent === '1 stored, 0 refused'",
        Duration::from_secs(60),
        "the forgery",
    )
    .await;
    wait_js(c, "document.querySelectorAll('#samples img').length === 4", Duration::from_secs(10), "four thumbnails")
        .await;
    let captions = text(c, "#samples").await;
    assert_eq!(captions.matches("forgery").count(), 1, "{captions}");
    assert_eq!(captions.matches("genuine").count(), 3, "{captions}");
    screenshot(c, "signature-subject.png").await;
    assert_only_own_host(c, &app.base).await;
    assert_eq!(console_errors(c).await, Vec::<String>::new(), "script errors in the page");
}
