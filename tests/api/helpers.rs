//! `spawn_app()`: the service started by the same code as `siamese serve` ([`siamese::startup`]) on a
//! random loopback port, with the models shipped in `models/`; it returns once the service is ready.

use siamese::api::ServerLimits;
use siamese::preprocess::DecodeLimits;
use siamese::runtime::BatchConfig;
use siamese::startup::{Application, CollectionSpec, Settings};
use siamese::store::Store;
use std::time::Duration;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// The server's database (tests look behind the API, e.g. for erasure).
    pub store: Store,
    /// The server's state (tests reach the model threads through it, e.g. to inject a fault).
    pub state: siamese::api::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), siamese::startup::StartupError>>>,
    _dir: Option<tempfile::TempDir>,
}

pub struct Options {
    pub limits: ServerLimits,
    pub batch: BatchConfig,
    /// Database URL; a fresh SQLite file in a temporary directory when `None`.
    pub database_url: Option<String>,
    pub collections: Vec<CollectionSpec>,
    /// The default model (`None`: as the cards say, i.e. the dlib face model).
    pub default_model: Option<&'static str>,
    pub gallery_precision: siamese::gallery::Precision,
    /// Where the models come from (`None`: the shipped `models/`).
    pub models_dir: Option<std::path::PathBuf>,
    /// Retrain jobs' datasets must lie under this folder.
    pub data_root: Option<std::path::PathBuf>,
    /// Jobs' folder (`None`: a temporary one).
    pub work_dir: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: ServerLimits {
                max_body_bytes: 4 << 20,
                max_images: 32,
                decode: DecodeLimits { max_dimension: 2048, max_alloc_bytes: 64 << 20 },
                timeouts: siamese::api::Timeouts::default(),
                max_request_decode_bytes: 1 << 30,
                max_inflight_decode_bytes: 2 << 30,
            },
            batch: BatchConfig {
                max_batch: 16,
                max_wait: Duration::from_millis(5),
                queue_capacity: 256,
                mirror_average: None,
            },
            database_url: None,
            collections: vec!["faces=face".parse().unwrap()],
            // The generated test images are not photos of faces: most tests use the AT&T-trained model.
            default_model: Some("face-att-small-v1"),
            gallery_precision: siamese::gallery::Precision::F32,
            models_dir: None,
            data_root: None,
            work_dir: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(o: Options) -> TestApp {
    let d = tempfile::tempdir().unwrap();
    let url = match o.database_url {
        Some(u) => u,
        None => format!("sqlite://{}", d.path().join("siamese.db").display()),
    };
    let work_dir = o.work_dir.unwrap_or_else(|| d.path().join("work"));
    let dir = Some(d);
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        models_dir: o.models_dir.unwrap_or_else(crate::common::models_dir),
        device: tch::Device::Cpu,
        default_model: o.default_model.map(str::to_string),
        batch: o.batch,
        limits: o.limits,
        database_url: url.clone(),
        gallery_precision: o.gallery_precision,
        collections: o.collections,
        work_dir,
        data_root: o.data_root,
    };
    let app = Application::build(settings).await.expect("service builds");
    let (addr, state) = (app.addr(), app.state().clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    // Ready means models, collections and galleries are loaded, as `/readyz` reports.
    while !state.is_ready() {
        assert!(!server.is_finished(), "the service stopped while starting: {:?}", server.await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        store: Store::connect(&url).await.expect("database opens"),
        state,
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

impl TestApp {
    /// Signal graceful shutdown and wait for the service to stop (its tasks stopped, its model threads
    /// joined).
    pub async fn shut_down(&mut self) -> Result<(), siamese::startup::StartupError> {
        let _ = self.shutdown.take().expect("running").send(());
        self.server.take().expect("running").await.expect("server task")
    }

    /// The temporary folder holding the server's SQLite database (and its WAL) when no URL was given.
    pub fn db_dir(&self) -> &std::path::Path {
        self._dir.as_ref().expect("a temporary folder").path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET `path` and parse the JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client.get(self.url(path)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn verify_multipart(&self, a: Vec<u8>, b: Vec<u8>, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new()
            .part("image_a", reqwest::multipart::Part::bytes(a).file_name("a.png"))
            .part("image_b", reqwest::multipart::Part::bytes(b).file_name("b.png"));
        for (k, v) in extra {
            form = form.text(k.to_string(), v.to_string());
        }
        self.client.post(self.url("/v1/verify")).multipart(form).send().await.unwrap()
    }

    /// POST a raw body with the given content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: &'static str) -> reqwest::Response {
        self.client.post(self.url(path)).header("content-type", content_type).body(body).send().await.unwrap()
    }

    /// POST a JSON body to `path` and parse the JSON answer.
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        self.client.post(self.url(path)).json(&body).send().await.unwrap().json().await.unwrap()
    }

    pub async fn verify_json(&self, body: serde_json::Value) -> reqwest::Response {
        self.client.post(self.url("/v1/verify")).json(&body).send().await.unwrap()
    }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Check a problem+json error: status, content type and stable code.
pub async fn assert_problem(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "status for {code}");
    let ct = resp.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert_eq!(ct, "application/problem+json", "content type for {code}");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status);
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    v
}

/// `POST /v1/admin/keys` for a key with `scopes` (comma-separated), with `admin` as the caller's key.
pub async fn create_key(url: String, c: &reqwest::Client, scopes: &str, admin: Option<&str>) -> serde_json::Value {
    let mut r = c.post(url).json(&serde_json::json!({"name": scopes, "scopes": scopes}));
    if let Some(k) = admin {
        r = r.header("x-api-key", k);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}
