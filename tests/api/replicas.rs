//! Two server *processes* on one PostgreSQL database: a sample enrolled through one is found by the other's
//! identify within a second (LISTEN/NOTIFY keeps each replica's in-memory gallery in step).

use crate::common::{encode, fresh_postgres, SyntheticIdentity};
use image::ImageFormat;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `siamese serve` child process on a random loopback port; stopped with SIGTERM when dropped.
pub struct ServerProcess {
    child: Child,
    pub base: String,
}

impl ServerProcess {
    pub fn start(database_url: &str) -> ServerProcess {
        Self::start_with(database_url, &[])
    }

    /// With more `serve` flags (e.g. `--work-dir`, `--data-root`).
    pub fn start_with(database_url: &str, extra: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_siamese"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            // The generated test images are not photos: the AT&T-trained model takes them as they are.
            .args(["serve", "--bind", "127.0.0.1:0", "--database-url", database_url, "--device", "cpu"])
            .args(["--default-model", "face-att-small-v1"])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("siamese serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(addr) = line.split("serving on http://").nth(1) {
                        let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_string());
                        sent = true;
                    }
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("server printed its address");
        ServerProcess { child, base: format!("http://{addr}") }
    }

    pub async fn wait_ready(&self, client: &reqwest::Client) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never became ready", self.base);
    }
}

impl ServerProcess {
    /// Stop the process the hard way (SIGKILL: no shutdown code runs).
    pub fn kill9(mut self) {
        let _ = Command::new("kill").arg("-KILL").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_sample_enrolled_through_one_replica_is_identified_by_another_within_a_second() {
    let Some(url) = fresh_postgres("replicas_share_a_gallery").await else { return };
    let (a, b) = (ServerProcess::start(&url), ServerProcess::start(&url));
    let c = reqwest::Client::new();
    a.wait_ready(&c).await;
    b.wait_ready(&c).await;
    let img = encode(&SyntheticIdentity::new(42).sample(0, 92, 112), ImageFormat::Png);
    let identify_on_b = || {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(img.clone()).file_name("p.png"));
        c.post(format!("{}/v1/collections/faces/identify", b.base)).multipart(form).send()
    };
    let before: Value = identify_on_b().await.unwrap().json().await.unwrap();
    assert_eq!(before["searched"], 0, "{before}");

    let r = c
        .post(format!("{}/v1/collections/faces/subjects", a.base))
        .json(&json!({"name": "frank"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let form =
        reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(img.clone()).file_name("a.png"));
    let r =
        c.post(format!("{}/v1/collections/faces/subjects/frank/samples", a.base)).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let enrolled = Instant::now();
    let seen = loop {
        let v: Value = identify_on_b().await.unwrap().json().await.unwrap();
        if v["match"]["subject"] == "frank" {
            break enrolled.elapsed();
        }
        assert!(enrolled.elapsed() < Duration::from_secs(5), "replica B never saw the sample: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("replica B identified the sample enrolled through A after {:.1} ms", seen.as_secs_f64() * 1e3);
    assert!(seen < Duration::from_secs(1), "took {seen:?}");

    // Erasure through B reaches A too.
    let r = c.delete(format!("{}/v1/collections/faces/subjects/frank", b.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let erased = Instant::now();
    loop {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(img.clone()).file_name("p.png"));
        let v: Value = c
            .post(format!("{}/v1/collections/faces/identify", a.base))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["searched"] == 0 {
            break;
        }
        assert!(erased.elapsed() < Duration::from_secs(1), "replica A still holds the erased subject: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
