//! MTCNN face detection (Zhang et al. 2016) with facenet-pytorch's weights (MIT), converted into
//! `models/mtcnn-v1/weights.safetensors` by `scripts/convert_mtcnn.py`.
//!
//! The three networks run in `tch`; the glue follows facenet-pytorch's `detect_face` step by step, so that
//! boxes and landmarks match it: an image pyramid (scale 12/min_face, factor 0.709) through PNet, NMS 0.5
//! per scale and 0.7 over all scales, box regression, squaring; 24×24 crops (area resampling) through RNet,
//! threshold, NMS 0.7, regression, squaring; 48×48 crops through ONet, threshold, landmarks, regression and a
//! final "Min"-overlap NMS 0.7.
//!
//! One file on purpose, over 500 lines: it is a port of one upstream function and its three networks, kept
//! in the upstream's order so that it can be checked against it step by step.

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Why the detector could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("detector.json: {0}")]
    Config(serde_json::Error),
    #[error("weights {0}: {1}")]
    Weights(std::path::PathBuf, tch::TchError),
}

/// Detection parameters (the card `models/mtcnn-v1/detector.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MtcnnConfig {
    /// Smallest face side searched, pixels.
    pub min_face: f64,
    /// Pyramid scale step.
    pub factor: f64,
    /// Score thresholds of PNet, RNet, ONet.
    pub thresholds: [f32; 3],
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        MtcnnConfig { min_face: 20.0, factor: 0.709, thresholds: [0.6, 0.7, 0.7] }
    }
}

/// One detected face: box `[x1, y1, x2, y2]`, score, and five landmarks (left eye, right eye, nose, left and
/// right mouth corner, as seen in the image), in image pixels.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Face {
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    pub fn area(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]).max(0.0) * (self.bbox[3] - self.bbox[1]).max(0.0)
    }
}

struct Conv {
    conv: nn::Conv2D,
    prelu: Tensor,
}

impl Conv {
    fn new(p: &nn::Path, name: &str, prelu: &str, i: i64, o: i64, k: i64) -> Self {
        Conv {
            conv: nn::conv2d(p / name, i, o, k, Default::default()),
            prelu: (p / prelu).var("weight", &[o], nn::Init::Const(0.25)),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        self.conv.forward(x).prelu(&self.prelu)
    }
}

struct Dense {
    lin: nn::Linear,
    prelu: Option<Tensor>,
}

impl Dense {
    fn new(p: &nn::Path, name: &str, prelu: Option<&str>, i: i64, o: i64) -> Self {
        Dense {
            lin: nn::linear(p / name, i, o, Default::default()),
            prelu: prelu.map(|n| (p / n).var("weight", &[o], nn::Init::Const(0.25))),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.lin.forward(x);
        match &self.prelu {
            Some(w) => y.prelu(w),
            None => y,
        }
    }
}

struct PNet {
    c: [Conv; 3],
    prob: nn::Conv2D,
    reg: nn::Conv2D,
}

struct RNet {
    c: [Conv; 3],
    d4: Dense,
    prob: Dense,
    reg: Dense,
}

struct ONet {
    c: [Conv; 4],
    d5: Dense,
    prob: Dense,
    reg: Dense,
    lmk: Dense,
}

/// The three networks on one `VarStore`.
pub struct Mtcnn {
    vs: nn::VarStore,
    pnet: PNet,
    rnet: RNet,
    onet: ONet,
    pub config: MtcnnConfig,
}

impl std::fmt::Debug for Mtcnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mtcnn").field("config", &self.config).finish()
    }
}

fn max_pool(x: &Tensor, k: i64, s: i64) -> Tensor {
    x.max_pool2d([k, k], [s, s], [0, 0], [1, 1], true)
}

/// facenet-pytorch flattens RNet/ONet features after permuting to (N, W, H, C).
fn flatten_whc(x: &Tensor) -> Tensor {
    x.permute([0, 3, 2, 1]).contiguous().flatten(1, -1)
}

impl Mtcnn {
    /// Load `dir/weights.safetensors` (and `dir/detector.json` when present) onto `device`.
    pub fn load(dir: &std::path::Path, device: Device) -> Result<Mtcnn, DetectorError> {
        let config = match std::fs::read_to_string(dir.join("detector.json")) {
            Ok(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).map_err(DetectorError::Config)?;
                serde_json::from_value(v["mtcnn"].clone()).map_err(DetectorError::Config)?
            }
            Err(_) => MtcnnConfig::default(),
        };
        let mut vs = nn::VarStore::new(device);
        let r = vs.root();
        let (p, q, o) = (&r / "pnet", &r / "rnet", &r / "onet");
        let pnet = PNet {
            c: [
                Conv::new(&p, "conv1", "prelu1", 3, 10, 3),
                Conv::new(&p, "conv2", "prelu2", 10, 16, 3),
                Conv::new(&p, "conv3", "prelu3", 16, 32, 3),
            ],
            prob: nn::conv2d(&p / "conv4_1", 32, 2, 1, Default::default()),
            reg: nn::conv2d(&p / "conv4_2", 32, 4, 1, Default::default()),
        };
        let rnet = RNet {
            c: [
                Conv::new(&q, "conv1", "prelu1", 3, 28, 3),
                Conv::new(&q, "conv2", "prelu2", 28, 48, 3),
                Conv::new(&q, "conv3", "prelu3", 48, 64, 2),
            ],
            d4: Dense::new(&q, "dense4", Some("prelu4"), 576, 128),
            prob: Dense::new(&q, "dense5_1", None, 128, 2),
            reg: Dense::new(&q, "dense5_2", None, 128, 4),
        };
        let onet = ONet {
            c: [
                Conv::new(&o, "conv1", "prelu1", 3, 32, 3),
                Conv::new(&o, "conv2", "prelu2", 32, 64, 3),
                Conv::new(&o, "conv3", "prelu3", 64, 64, 3),
                Conv::new(&o, "conv4", "prelu4", 64, 128, 2),
            ],
            d5: Dense::new(&o, "dense5", Some("prelu5"), 1152, 256),
            prob: Dense::new(&o, "dense6_1", None, 256, 2),
            reg: Dense::new(&o, "dense6_2", None, 256, 4),
            lmk: Dense::new(&o, "dense6_3", None, 256, 10),
        };
        let w = dir.join("weights.safetensors");
        vs.load(&w).map_err(|e| DetectorError::Weights(w.clone(), e))?;
        vs.freeze();
        Ok(Mtcnn { vs, pnet, rnet, onet, config })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    fn pnet(&self, x: &Tensor) -> (Tensor, Tensor) {
        let n = &self.pnet;
        let h = n.c[0].forward(x);
        let h = n.c[2].forward(&n.c[1].forward(&max_pool(&h, 2, 2)));
        (n.reg.forward(&h), n.prob.forward(&h).softmax(1, Kind::Float))
    }

    fn rnet(&self, x: &Tensor) -> (Tensor, Tensor) {
        let n = &self.rnet;
        let h = max_pool(&n.c[0].forward(x), 3, 2);
        let h = max_pool(&n.c[1].forward(&h), 3, 2);
        let h = n.d4.forward(&flatten_whc(&n.c[2].forward(&h)));
        (n.reg.forward(&h), n.prob.forward(&h).softmax(1, Kind::Float))
    }

    fn onet(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let n = &self.onet;
        let h = max_pool(&n.c[0].forward(x), 3, 2);
        let h = max_pool(&n.c[1].forward(&h), 3, 2);
        let h = max_pool(&n.c[2].forward(&h), 2, 2);
        let h = n.d5.forward(&flatten_whc(&n.c[3].forward(&h)));
        (n.reg.forward(&h), n.lmk.forward(&h), n.prob.forward(&h).softmax(1, Kind::Float))
    }

    /// Detect faces in an RGB image given as `height × width × 3` bytes. Faces come largest first.
    pub fn detect(&self, rgb: &[u8], width: usize, height: usize) -> Vec<Face> {
        self.detect_batch(&[(rgb, width, height)]).pop().unwrap_or_default()
    }

    /// Detect faces in several images at once: each image's pyramid goes through PNet on its own (sizes
    /// differ), then the candidates of *all* images go through RNet together, and ONet together.
    pub fn detect_batch(&self, images: &[(&[u8], usize, usize)]) -> Vec<Vec<Face>> {
        tch::no_grad(|| {
            let dev = self.device();
            let tensors: Vec<Tensor> = images
                .iter()
                .map(|(rgb, w, h)| {
                    Tensor::from_slice(rgb)
                        .reshape([*h as i64, *w as i64, 3])
                        .permute([2, 0, 1])
                        .unsqueeze(0)
                        .to_kind(Kind::Float)
                        .to_device(dev)
                })
                .collect();
            let dims: Vec<(usize, usize)> = images.iter().map(|(_, w, h)| (*w, *h)).collect();
            let mut boxes: Vec<Vec<[f32; 5]>> =
                tensors.iter().zip(&dims).map(|(t, (w, h))| self.stage1(t, *w, *h)).collect();
            // Stage 2: RNet on every image's candidates at once.
            let (input, counts) = batch_crops(&tensors, &dims, &mut boxes, 24);
            if let Some(input) = input {
                let (reg, prob) = self.rnet(&input);
                let (reg, prob) = (to_vec(&reg), to_vec(&prob));
                let mut off = 0;
                for (b, n) in boxes.iter_mut().zip(&counts) {
                    *b = self.stage2_post(b, &reg[4 * off..4 * (off + n)], &prob[2 * off..2 * (off + n)]);
                    off += n;
                }
            }
            // Stage 3: ONet likewise.
            let (input, counts) = batch_crops(&tensors, &dims, &mut boxes, 48);
            let Some(input) = input else { return vec![Vec::new(); images.len()] };
            let (reg, lmk, prob) = self.onet(&input);
            let (reg, lmk, prob) = (to_vec(&reg), to_vec(&lmk), to_vec(&prob));
            let mut off = 0;
            boxes
                .iter()
                .zip(&counts)
                .map(|(b, n)| {
                    let faces = self.stage3_post(
                        b,
                        &reg[4 * off..4 * (off + n)],
                        &lmk[10 * off..10 * (off + n)],
                        &prob[2 * off..2 * (off + n)],
                    );
                    off += n;
                    faces
                })
                .collect()
        })
    }

    /// PNet over the image pyramid: squared candidate boxes `[x1, y1, x2, y2, score]`.
    fn stage1(&self, img: &Tensor, w: usize, h: usize) -> Vec<[f32; 5]> {
        let cfg = &self.config;
        let m = 12.0 / cfg.min_face;
        let mut minl = h.min(w) as f64 * m;
        let mut scales = Vec::new();
        let mut s = m;
        while minl >= 12.0 {
            scales.push(s);
            s *= cfg.factor;
            minl *= cfg.factor;
        }
        let mut boxes: Vec<[f32; 9]> = Vec::new();
        for &scale in &scales {
            let (hs, ws) = ((h as f64 * scale + 1.0) as i64, (w as f64 * scale + 1.0) as i64);
            let im = (img.adaptive_avg_pool2d([hs, ws]) - 127.5) * 0.0078125;
            let (reg, prob) = self.pnet(&im);
            let (rh, rw) = (reg.size()[2], reg.size()[3]);
            debug_assert_eq!((rh, rw), (reg_dims(hs), reg_dims(ws)));
            let (reg, prob) = (to_vec(&reg), to_vec(&prob));
            let plane = (rh * rw) as usize;
            let mut cand = Vec::new();
            for y in 0..rh as usize {
                for x in 0..rw as usize {
                    let i = y * rw as usize + x;
                    let p = prob[plane + i];
                    if p >= cfg.thresholds[0] {
                        let sc = scale as f32;
                        let (bx, by) = (x as f32, y as f32);
                        cand.push([
                            ((2.0 * bx + 1.0) / sc).floor(),
                            ((2.0 * by + 1.0) / sc).floor(),
                            ((2.0 * bx + 12.0) / sc).floor(),
                            ((2.0 * by + 12.0) / sc).floor(),
                            p,
                            reg[i],
                            reg[plane + i],
                            reg[2 * plane + i],
                            reg[3 * plane + i],
                        ]);
                    }
                }
            }
            let keep = nms(&cand, 0.5, Overlap::Union);
            boxes.extend(keep.into_iter().map(|k| cand[k]));
        }
        let keep = nms(&boxes, 0.7, Overlap::Union);
        let mut b: Vec<[f32; 5]> = keep
            .into_iter()
            .map(|k| {
                let r = boxes[k];
                let (rw, rh) = (r[2] - r[0], r[3] - r[1]);
                [r[0] + r[5] * rw, r[1] + r[6] * rh, r[2] + r[7] * rw, r[3] + r[8] * rh, r[4]]
            })
            .collect();
        b.iter_mut().for_each(rerec);
        b
    }

    /// RNet's verdict on one image's candidates: threshold, NMS, regression, squaring.
    fn stage2_post(&self, b: &[[f32; 5]], reg: &[f32], prob: &[f32]) -> Vec<[f32; 5]> {
        let mut pass: Vec<([f32; 5], [f32; 4])> = Vec::new();
        for (k, bx) in b.iter().enumerate() {
            let sc = prob[2 * k + 1];
            if sc > self.config.thresholds[1] {
                pass.push((
                    [bx[0], bx[1], bx[2], bx[3], sc],
                    [reg[4 * k], reg[4 * k + 1], reg[4 * k + 2], reg[4 * k + 3]],
                ));
            }
        }
        let keep = nms(&pass.iter().map(|p| p.0).collect::<Vec<_>>(), 0.7, Overlap::Union);
        keep.into_iter()
            .map(|k| {
                let mut x = bbreg(pass[k].0, pass[k].1);
                rerec(&mut x);
                x
            })
            .collect()
    }

    /// ONet's verdict on one image's candidates: threshold, landmarks, regression, "Min" NMS; largest first.
    fn stage3_post(&self, b: &[[f32; 5]], reg: &[f32], lmk: &[f32], prob: &[f32]) -> Vec<Face> {
        let mut faces: Vec<([f32; 5], Face)> = Vec::new();
        for (k, bx) in b.iter().enumerate() {
            let sc = prob[2 * k + 1];
            if sc <= self.config.thresholds[2] {
                continue;
            }
            let (wi, hi) = (bx[2] - bx[0] + 1.0, bx[3] - bx[1] + 1.0);
            let mut landmarks = [[0f32; 2]; 5];
            for (j, l) in landmarks.iter_mut().enumerate() {
                *l = [wi * lmk[10 * k + j] + bx[0] - 1.0, hi * lmk[10 * k + 5 + j] + bx[1] - 1.0];
            }
            let r =
                bbreg([bx[0], bx[1], bx[2], bx[3], sc], [reg[4 * k], reg[4 * k + 1], reg[4 * k + 2], reg[4 * k + 3]]);
            faces.push((r, Face { bbox: [r[0], r[1], r[2], r[3]], score: sc, landmarks }));
        }
        let keep = nms(&faces.iter().map(|f| f.0).collect::<Vec<_>>(), 0.7, Overlap::Min);
        let mut out: Vec<Face> = keep.into_iter().map(|k| faces[k].1.clone()).collect();
        out.sort_by(|a, b| b.area().total_cmp(&a.area()));
        out
    }
}

/// Crops of every image's boxes (boxes with an empty crop are dropped in place), stacked into one batch,
/// and how many each image contributed.
fn batch_crops(
    tensors: &[Tensor],
    dims: &[(usize, usize)],
    boxes: &mut [Vec<[f32; 5]>],
    size: i64,
) -> (Option<Tensor>, Vec<usize>) {
    let mut parts = Vec::new();
    let mut counts = Vec::new();
    for ((t, (w, h)), b) in tensors.iter().zip(dims).zip(boxes.iter_mut()) {
        if b.is_empty() {
            counts.push(0);
            continue;
        }
        let (input, kept) = crops(t, b, *w, *h, size);
        *b = kept;
        counts.push(b.len());
        if !b.is_empty() {
            parts.push(input);
        }
    }
    if parts.is_empty() {
        (None, counts)
    } else {
        (Some(Tensor::cat(&parts, 0)), counts)
    }
}

/// PNet's output side for an input side (conv 3, pool 2 ceil, conv 3, conv 3).
fn reg_dims(s: i64) -> i64 {
    let a = s - 2;
    let b = (a + 1) / 2; // ceil(a / 2)
    b - 4
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).contiguous().view([-1])).unwrap_or_default()
}

fn rerec(b: &mut [f32; 5]) {
    let (h, w) = (b[3] - b[1], b[2] - b[0]);
    let l = w.max(h);
    b[0] = b[0] + w * 0.5 - l * 0.5;
    b[1] = b[1] + h * 0.5 - l * 0.5;
    b[2] = b[0] + l;
    b[3] = b[1] + l;
}

fn bbreg(b: [f32; 5], r: [f32; 4]) -> [f32; 5] {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [b[0] + r[0] * w, b[1] + r[1] * h, b[2] + r[2] * w, b[3] + r[3] * h, b[4]]
}

/// Crops of the boxes (clipped to the image as facenet-pytorch's `pad` does), area-resampled to `size`.
/// Boxes with an empty crop are dropped.
fn crops(img: &Tensor, boxes: &[[f32; 5]], w: usize, h: usize, size: i64) -> (Tensor, Vec<[f32; 5]>) {
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for b in boxes {
        let (x, y) = ((b[0].trunc() as i64).max(1), (b[1].trunc() as i64).max(1));
        let (ex, ey) = ((b[2].trunc() as i64).min(w as i64), (b[3].trunc() as i64).min(h as i64));
        if ey > y - 1 && ex > x - 1 {
            let c = img.narrow(2, y - 1, ey - y + 1).narrow(3, x - 1, ex - x + 1);
            out.push(c.adaptive_avg_pool2d([size, size]));
            kept.push(*b);
        }
    }
    if out.is_empty() {
        return (Tensor::zeros([0], (Kind::Float, img.device())), kept);
    }
    ((Tensor::cat(&out, 0) - 127.5) * 0.0078125, kept)
}

#[derive(Clone, Copy, PartialEq)]
enum Overlap {
    /// Intersection over union, torchvision's areas (no +1).
    Union,
    /// Intersection over the smaller box, with +1 areas (facenet-pytorch's numpy NMS).
    Min,
}

/// Greedy NMS on `[x1, y1, x2, y2, score, ...]`; returns kept indices, best first.
fn nms<const N: usize>(boxes: &[[f32; N]], threshold: f32, how: Overlap) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| boxes[b][4].total_cmp(&boxes[a][4]));
    let plus = if how == Overlap::Min { 1.0 } else { 0.0 };
    let area = |b: &[f32; N]| (b[2] - b[0] + plus) * (b[3] - b[1] + plus);
    let mut keep = Vec::new();
    let mut dead = vec![false; boxes.len()];
    for (oi, &i) in order.iter().enumerate() {
        if dead[i] {
            continue;
        }
        keep.push(i);
        let bi = &boxes[i];
        for &j in &order[oi + 1..] {
            if dead[j] {
                continue;
            }
            let bj = &boxes[j];
            let iw = (bi[2].min(bj[2]) - bi[0].max(bj[0]) + plus).max(0.0);
            let ih = (bi[3].min(bj[3]) - bi[1].max(bj[1]) + plus).max(0.0);
            let inter = iw * ih;
            let o = match how {
                Overlap::Union => inter / (area(bi) + area(bj) - inter),
                Overlap::Min => inter / area(bi).min(area(bj)),
            };
            if o > threshold {
                dead[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let b = [[0.0, 0.0, 10.0, 10.0, 0.9], [1.0, 1.0, 11.0, 11.0, 0.8], [20.0, 20.0, 30.0, 30.0, 0.7]];
        assert_eq!(nms(&b, 0.5, Overlap::Union), vec![0, 2]);
        assert_eq!(nms(&b, 0.9, Overlap::Union), vec![0, 1, 2]);
    }

    #[test]
    fn pnet_output_size_matches_the_layers() {
        // 12 → conv 10 → pool(ceil) 5 → conv 3 → conv 1.
        assert_eq!(reg_dims(12), 1);
        assert_eq!(reg_dims(13), 2);
        assert_eq!(reg_dims(100), 45);
    }
}
