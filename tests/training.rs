//! Training learns: on synthetic identities the tests generate (so this runs anywhere), contrastive training
//! at least halves the validation EER of the untrained encoder, and the written model directory loads and
//! reproduces its card's figures.

mod common;

use siamese::dataset::parse_identity_list;
use siamese::model::{Architecture, Head, InputSpec, LoadedModel};
use siamese::train::{self, Augment, TrainConfig};
use std::sync::atomic::AtomicBool;

fn config(data: &std::path::Path, out: &std::path::Path) -> TrainConfig {
    TrainConfig {
        data: data.to_path_buf(),
        train_ids: parse_identity_list("id0-id15").unwrap(),
        val_ids: parse_identity_list("id16-id23").unwrap(),
        test_ids: vec![],
        out: out.to_path_buf(),
        id: "synthetic-test".into(),
        version: 1,
        modality: siamese::model::Modality::Face,
        input: InputSpec {
            width: 32,
            height: 40,
            channels: 1,
            mean: vec![0.5],
            std: vec![0.5],
            mirror_average: false,
            tta: vec![],
            preprocess: Default::default(),
        },
        architecture: Architecture::ConvNet {
            channels: vec![16, 32, 64],
            convs: vec![1, 1, 1],
            embedding: 32,
            dropout: 0.0,
            l2_normalize: true,
            head: Head::GlobalAverage,
        },
        epochs: 8,
        batch_pairs: 32,
        pairs_per_image: 4,
        lr: 3e-3,
        weight_decay: 0.0,
        margin: 1.0,
        augment: Augment {
            rotate_deg: 5.0,
            shift: 0.03,
            scale: 0.05,
            brightness: 0.05,
            contrast: 0.1,
            hflip: false,
            ..Augment::NONE
        },
        sampler: train::Sampler::Pairs,
        ema_decay: 0.0,
        seed: 7,
        device: tch::Device::Cpu,
        init: None,
        freeze: vec![],
        lr_mult: Default::default(),
        progress: false,
        time_limit: None,
    }
}

#[test]
fn contrastive_training_at_least_halves_validation_eer_on_generated_identities() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_synthetic_dataset(&data, 0, 48, 8);
    let out = tmp.path().join("model");
    let mut cfg = config(&data, &out);
    cfg.train_ids = parse_identity_list("id0-id31").unwrap();
    cfg.val_ids = parse_identity_list("id32-id47").unwrap();
    cfg.epochs = 10;
    cfg.sampler = train::Sampler::Pk { p: 16, k: 4, steps: 15, forgeries: 0, forger_classes: false };
    cfg.ema_decay = 0.9;
    let res = train::train(&cfg, &AtomicBool::new(false)).expect("training runs");
    let (before, after) = (res.untrained_val[0].eer, res.val[0].eer);
    eprintln!(
        "validation EER (euclidean): untrained {:.2}% → trained {:.2}% (best epoch {})",
        before * 100.0,
        after * 100.0,
        res.best_epoch
    );
    assert!(before > 0.05, "the task must be hard for an untrained encoder (EER {before})");
    assert!(after <= before / 2.0, "EER did not halve: {before} → {after}");

    // The written directory is a complete, loadable model whose card matches what training measured.
    let m = LoadedModel::load(&out, tch::Device::Cpu).expect("model directory loads");
    assert_eq!(m.card.id, "synthetic-test");
    assert!((m.card.evaluation["validation"]["euclidean"]["eer"].as_f64().unwrap() - after).abs() < 1e-9);
    let t = &m.card.thresholds.euclidean;
    assert!(t.value > 0.0 && t.value < 2.0, "threshold {t:?}");
    assert!(t.score.b < 0.0, "score must fall as distance grows: {:?}", t.score);
}

#[test]
fn training_with_the_same_seed_is_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_synthetic_dataset(&data, 0, 24, 4);
    let mut cfg = config(&data, &tmp.path().join("a"));
    cfg.epochs = 2;
    let a = train::train(&cfg, &AtomicBool::new(false)).unwrap();
    cfg.out = tmp.path().join("b");
    let b = train::train(&cfg, &AtomicBool::new(false)).unwrap();
    assert_eq!(a.val[0].eer, b.val[0].eer);
    assert_eq!(a.card.thresholds.euclidean.value, b.card.thresholds.euclidean.value);
}

/// A small synthetic dataset of `ids` identities × 2 images in a temporary folder, and a config on it.
fn small(ids: u64, train: &str, val: &str) -> (tempfile::TempDir, TrainConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_synthetic_dataset(&data, 0, ids, 2);
    let mut cfg = config(&data, &tmp.path().join("m"));
    cfg.train_ids = parse_identity_list(train).unwrap();
    cfg.val_ids = parse_identity_list(val).unwrap();
    (tmp, cfg)
}

#[test]
fn training_refuses_identities_in_both_training_and_validation() {
    let (_tmp, cfg) = small(4, "id0-id2", "id2-id3");
    let err = train::train(&cfg, &AtomicBool::new(false)).unwrap_err();
    assert!(err.to_string().contains("both training and validation"), "{err}");
}

#[test]
fn cancelling_stops_training() {
    let (tmp, cfg) = small(6, "id0-id3", "id4-id5");
    let err = train::train(&cfg, &AtomicBool::new(true)).unwrap_err();
    assert!(matches!(err, train::TrainError::Cancelled), "{err}");
    assert!(!tmp.path().join("m").join("weights.safetensors").exists());
}

#[test]
fn signature_layout_trains_with_forgeries_as_negatives_and_validates_against_them() {
    // A CEDAR-style folder: full_org/original_<w>_<n>.png and full_forg/forgeries_<w>_<n>.png. Each
    // "forgery" of writer w is drawn from another identity, so it must end up far from w's genuine ones.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cedar");
    std::fs::create_dir_all(root.join("full_org")).unwrap();
    std::fs::create_dir_all(root.join("full_forg")).unwrap();
    for w in 1..=8u64 {
        for n in 1..=4u64 {
            let g = common::SyntheticIdentity::new(w).sample(n, 92, 112);
            g.save(root.join(format!("full_org/original_{w}_{n}.png"))).unwrap();
            let f = common::SyntheticIdentity::new(w + 500).sample(n, 92, 112);
            f.save(root.join(format!("full_forg/forgeries_{w}_{n}.png"))).unwrap();
        }
    }
    let ds = siamese::dataset::Dataset::open(&root).unwrap();
    assert_eq!(ds.identities.len(), 8);
    assert_eq!(ds.identities[0].name, "w1");
    assert_eq!(ds.forgery_samples().len(), 32);
    let mut cfg = config(&root, &tmp.path().join("m"));
    cfg.train_ids = parse_identity_list("w1-w5").unwrap();
    cfg.val_ids = parse_identity_list("w6-w8").unwrap();
    cfg.test_ids = vec![];
    cfg.epochs = 2;
    cfg.sampler = train::Sampler::Pk { p: 4, k: 3, steps: 4, forgeries: 2, forger_classes: false };
    cfg.ema_decay = 0.9;
    let out = train::train(&cfg, &AtomicBool::new(false)).unwrap();
    // Validation impostors are each genuine sample against every forgery of the same writer: 3 × 4 × 4.
    assert_eq!(out.val[0].impostor, 48);
    assert_eq!(out.val[0].genuine, 3 * 6);
    let m = siamese::pipeline::LocalEncoder::load(&tmp.path().join("m"), tch::Device::Cpu, Default::default()).unwrap();
    let rep = train::evaluate_model(&m, &ds.subset(&cfg.val_ids).unwrap()).unwrap();
    assert_eq!(rep.pairs["impostor_kind"], "skilled forgeries");
    assert_eq!(rep.pairs["impostor"], 48);
}

#[test]
fn self_supervised_training_lowers_its_loss_without_labels_and_keeps_frozen_groups_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_synthetic_dataset(&data, 0, 32, 4);
    // A starting model (one supervised epoch), then self-supervised training from it with stage0 frozen.
    let base = tmp.path().join("base");
    let mut cfg = config(&data, &base);
    cfg.epochs = 1;
    train::train(&cfg, &AtomicBool::new(false)).expect("base model");
    let mut cfg = config(&data, &tmp.path().join("ssl"));
    cfg.train_ids = parse_identity_list("id0-id23").unwrap();
    cfg.val_ids = parse_identity_list("id24-id31").unwrap();
    cfg.sampler = train::Sampler::SelfSupervised { images: 32, steps: 8, temperature: 0.2 };
    cfg.epochs = 6;
    cfg.init = Some(base.clone());
    cfg.freeze = vec!["stage0".into()];
    let res = train::train(&cfg, &AtomicBool::new(false)).expect("self-supervised training runs");
    let losses: Vec<f64> = res.history.iter().map(|h| h.train_loss).collect();
    eprintln!("self-supervised NT-Xent per epoch: {losses:.3?}; val EER {:.2}%", res.val[0].eer * 100.0);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[losses.len() - 1] < 0.8 * losses[0], "NT-Xent did not fall: {losses:?}");
    let read = |d: &std::path::Path| -> std::collections::HashMap<String, tch::Tensor> {
        tch::Tensor::read_safetensors(d.join("weights.safetensors")).unwrap().into_iter().collect()
    };
    let (before, after) = (read(&base), read(&tmp.path().join("ssl")));
    let (mut same, mut moved) = (0, 0);
    for (name, t) in &before {
        if name.starts_with("stage0.") {
            assert!(t.equal(&after[name]), "frozen {name} changed");
            same += 1;
        } else if !name.contains("running") && !name.contains("num_batches") && !t.equal(&after[name]) {
            moved += 1;
        }
    }
    assert!(same > 0 && moved > 0, "frozen tensors {same}, moved tensors {moved}");
}
