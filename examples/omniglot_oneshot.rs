//! Omniglot 20-way one-shot classification (Lake et al.'s 20 official runs, `all_runs/runNN`): for each
//! run, the 20 test images are embedded with a model and each is given the class of its nearest training
//! image (Euclidean); prints each run's accuracy and the mean (Koch et al. 2015 report 92 % with a Siamese
//! network trained on the full background set).
//!
//! ```sh
//! cargo run --release --example omniglot_oneshot -- MODEL_DIR $SIAMESE_DATA/omniglot/all_runs
//! ```

use siamese::distance::Metric;
use siamese::pipeline::{LocalEncoder, Options};
use std::path::{Path, PathBuf};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, runs) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]));
    // Characters, not faces: every image is taken whole (no detection).
    let enc =
        LocalEncoder::load(&model, tch::Device::Cpu, Options { detect: false, ..Options::default() }).expect("model");
    let (mut right, mut total) = (0usize, 0usize);
    let mut per_run = Vec::new();
    for r in 1..=20 {
        let dir = runs.join(format!("run{r:02}"));
        let labels = std::fs::read_to_string(dir.join("class_labels.txt")).expect("class_labels.txt");
        // Each line: `runNN/test/itemK.png runNN/training/classJ.png` (paths relative to all_runs).
        let pairs: Vec<(PathBuf, PathBuf)> = labels
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, c)| (runs.join(t.trim()), runs.join(c.trim())))
            .collect();
        let mut classes: Vec<PathBuf> = std::fs::read_dir(dir.join("training"))
            .expect("training")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .collect();
        classes.sort();
        let tests: Vec<PathBuf> = pairs.iter().map(|p| p.0.clone()).collect();
        let ec = enc.embed_files(&classes).expect("embed classes");
        let et = enc.embed_files(&tests).expect("embed tests");
        let mut ok = 0;
        for (k, (_, truth)) in pairs.iter().enumerate() {
            let best = (0..classes.len())
                .min_by(|&a, &b| {
                    Metric::Euclidean.distance(&et[k], &ec[a]).total_cmp(&Metric::Euclidean.distance(&et[k], &ec[b]))
                })
                .expect("classes");
            ok += same_file(&classes[best], truth) as usize;
        }
        per_run.push(format!("{:.0}", 100.0 * ok as f64 / pairs.len() as f64));
        right += ok;
        total += pairs.len();
    }
    println!("per run (%): {}", per_run.join(" "));
    println!("20-way one-shot accuracy: {right}/{total} = {:.1}%", 100.0 * right as f64 / total as f64);
}

fn same_file(a: &Path, b: &Path) -> bool {
    a.file_name() == b.file_name()
}
