//! `siamese ensemble`: models trained apart on the same input combined into one model directory.

use super::{
    Architecture, InputSpec, LoadedModel, ModelCard, ModelError, Threshold, Thresholds, TtaWarp, CARD_FILE,
    WEIGHTS_FILE,
};
use crate::distance::Metric;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Combine trained models (same modality and input) into one [`Architecture::Ensemble`] model directory at
/// `out`: member `i`'s variables are stored under `member{i}.`. Its thresholds are provisional (the
/// Euclidean one the root mean square of the members', the cosine one their mean: what the ensemble's
/// distance is made of) until `siamese eval --calibrate` measures them.
pub fn combine_ensemble(
    members: &[PathBuf],
    out: &Path,
    id: &str,
    version: u32,
    tta: &[TtaWarp],
) -> Result<ModelCard, ModelError> {
    let invalid = |m: String| ModelError::InvalidCard(out.join(CARD_FILE), m);
    let cards = members.iter().map(|d| ModelCard::load(d)).collect::<Result<Vec<_>, _>>()?;
    let first = cards.first().ok_or_else(|| invalid("an ensemble needs at least two members".into()))?;
    if let Some((d, _)) =
        members.iter().zip(&cards).find(|(_, c)| c.input != first.input || c.modality != first.modality)
    {
        return Err(invalid(format!("{} has another input or modality than {}", d.display(), members[0].display())));
    }
    let mut tensors = Vec::new();
    for (i, d) in members.iter().enumerate() {
        let w = d.join(WEIGHTS_FILE);
        let named = Tensor::read_safetensors(&w).map_err(|e| ModelError::Weights(w.clone(), e.to_string()))?;
        tensors.extend(named.into_iter().map(|(name, t)| (format!("member{i}.{name}"), t)));
    }
    let n = cards.len() as f32;
    let threshold = |m: Metric| {
        let ts: Vec<f32> = cards.iter().map(|c| c.thresholds.get(m).value).collect();
        let value = match m {
            Metric::Euclidean => (ts.iter().map(|t| t * t).sum::<f32>() / n).sqrt(),
            Metric::Cosine => ts.iter().sum::<f32>() / n,
        };
        Threshold {
            value,
            method: "provisional, from the members' thresholds (calibrate with `siamese eval --calibrate`)".into(),
            at_eer: value,
            at_far_1e3: value,
            score: first.thresholds.get(m).score,
        }
    };
    let card = ModelCard {
        id: id.to_string(),
        version,
        modality: first.modality,
        architecture: Architecture::Ensemble { members: cards.iter().map(|c| c.architecture.clone()).collect() },
        input: InputSpec { tta: tta.to_vec(), ..first.input.clone() },
        embedding_size: cards.iter().map(|c| c.embedding_size).sum(),
        default_metric: first.default_metric,
        thresholds: Thresholds { euclidean: threshold(Metric::Euclidean), cosine: threshold(Metric::Cosine) },
        training: serde_json::json!({
            "command": "siamese ensemble",
            "members": cards.iter().zip(members).map(|(c, d)| serde_json::json!({
                "id": c.id, "version": c.version, "from": d.display().to_string(), "training": c.training,
                "evaluation": c.evaluation,
            })).collect::<Vec<_>>(),
        }),
        evaluation: serde_json::Value::Null,
        default: false,
        subject: None,
    };
    card.validate().map_err(invalid)?;
    std::fs::create_dir_all(out).map_err(|e| ModelError::Io(out.to_path_buf(), e))?;
    let w = out.join(WEIGHTS_FILE);
    Tensor::write_safetensors(&tensors, &w).map_err(|e| ModelError::Weights(w.clone(), e.to_string()))?;
    card.save(out)?;
    // Loading checks that every variable of the ensemble is in the file under its renamed name.
    LoadedModel::load(out, Device::Cpu)?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::ScoreMap;
    use crate::model::{Head, Modality, Network, Preprocess};
    use tch::{nn, Kind};

    fn member(dir: &Path, seed: i64, embedding: i64) {
        tch::manual_seed(seed);
        let input = InputSpec {
            width: 24,
            height: 16,
            channels: 1,
            mean: vec![0.5],
            std: vec![0.5],
            mirror_average: false,
            tta: vec![],
            preprocess: Preprocess::Resize,
        };
        let architecture = Architecture::ConvNet {
            channels: vec![4, 8],
            convs: vec![1, 1],
            embedding,
            dropout: 0.0,
            l2_normalize: true,
            head: Head::GlobalAverage,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = Network::new(&vs.root(), &architecture, &input);
        std::fs::create_dir_all(dir).unwrap();
        vs.save(dir.join(WEIGHTS_FILE)).unwrap();
        let t = |value: f32| Threshold {
            value,
            method: "test".into(),
            at_eer: value,
            at_far_1e3: value,
            score: ScoreMap { a: 1.0, b: -1.0 },
        };
        ModelCard {
            id: format!("m{seed}"),
            version: 1,
            modality: Modality::Signature,
            architecture,
            input,
            embedding_size: embedding,
            default_metric: Metric::Euclidean,
            thresholds: Thresholds { euclidean: t(0.3 * seed as f32), cosine: t(0.1 * seed as f32) },
            training: serde_json::Value::Null,
            evaluation: serde_json::Value::Null,
            default: false,
            subject: None,
        }
        .save(dir)
        .unwrap();
    }

    #[test]
    fn an_ensemble_embeds_as_its_members_concatenated_and_averages_their_squared_distances() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, e) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("e"));
        member(&a, 1, 8);
        member(&b, 2, 6);
        let card = combine_ensemble(&[a.clone(), b.clone()], &e, "ens", 3, &[]).unwrap();
        assert_eq!((card.embedding_size, card.version, card.modality), (14, 3, Modality::Signature));
        // Provisional thresholds: RMS of 0.3 and 0.6, mean of 0.1 and 0.2.
        assert!((card.thresholds.euclidean.value - (0.225f32).sqrt()).abs() < 1e-6);
        assert!((card.thresholds.cosine.value - 0.15).abs() < 1e-6);
        let [ma, mb, me] = [&a, &b, &e].map(|d| LoadedModel::load(d, Device::Cpu).unwrap());
        tch::manual_seed(7);
        let x = Vec::<f32>::try_from(Tensor::rand([3 * 16 * 24], (Kind::Float, Device::Cpu))).unwrap();
        let (ea, eb, ee) =
            (ma.embed_flat(&x, 3).unwrap(), mb.embed_flat(&x, 3).unwrap(), me.embed_flat(&x, 3).unwrap());
        let s = 1.0 / 2f32.sqrt();
        for i in 0..3 {
            let want: Vec<f32> = ea[i].iter().chain(&eb[i]).map(|v| v * s).collect();
            assert!(ee[i].iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-5), "{:?} vs {want:?}", ee[i]);
        }
        let d2 = |u: &[f32], v: &[f32]| u.iter().zip(v).map(|(p, q)| (p - q).powi(2)).sum::<f32>();
        let mean = (d2(&ea[0], &ea[1]) + d2(&eb[0], &eb[1])) / 2.0;
        assert!((d2(&ee[0], &ee[1]) - mean).abs() < 1e-5);
        // With test-time warps the embedding is the normalised mean of the image's and its warps'.
        let warps = [
            TtaWarp { rotate_deg: 3.0, scale: 1.0, shear: 0.0, aspect: 1.0, shift_x: 0.0, shift_y: 0.0 },
            TtaWarp { rotate_deg: -3.0, scale: 1.1, shear: 0.1, aspect: 0.9, shift_x: 0.05, shift_y: 0.0 },
        ];
        let t = tmp.path().join("t");
        let card_t = combine_ensemble(&[a.clone(), b.clone()], &t, "tta", 4, &warps).unwrap();
        assert_eq!(ModelCard::load(&t).unwrap().input.tta, warps.to_vec());
        assert_eq!(card_t.input.tta.len(), 2);
        let mt = LoadedModel::load(&t, Device::Cpu).unwrap();
        let et = mt.embed_flat(&x, 3).unwrap();
        let xt = Tensor::from_slice(&x).view([3, 1, 16, 24]);
        let views: Vec<Vec<Vec<f32>>> = std::iter::once(x.clone())
            .chain(warps.iter().map(|w| Vec::<f32>::try_from(w.apply(&xt).view([-1])).unwrap()))
            .map(|v| me.embed_flat(&v, 3).unwrap())
            .collect();
        for i in 0..3 {
            let mut mean: Vec<f32> = (0..14).map(|j| views.iter().map(|v| v[i][j]).sum::<f32>() / 3.0).collect();
            let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
            mean.iter_mut().for_each(|v| *v /= norm);
            assert!(et[i].iter().zip(&mean).all(|(g, w)| (g - w).abs() < 1e-5), "{:?} vs {mean:?}", et[i]);
            assert!(et[i].iter().zip(&ee[i]).any(|(g, w)| (g - w).abs() > 1e-4), "the warps change the embedding");
        }
        // Members of other inputs do not combine, and nothing is written.
        let c = tmp.path().join("c");
        member(&c, 3, 8);
        let mut card_c = ModelCard::load(&c).unwrap();
        card_c.input.width = 32;
        card_c.save(&c).unwrap();
        let bad = tmp.path().join("bad");
        assert!(matches!(combine_ensemble(&[a, c], &bad, "x", 1, &[]), Err(ModelError::InvalidCard(..))));
        assert!(!bad.exists());
    }
}
