//! The model directory format and the architectures we build with `tch::nn`.
//!
//! A model is a directory `models/<id>/` holding `model.json` (the *card*, [`ModelCard`]) and
//! `weights.safetensors` (every variable of the network's `VarStore`, batch-norm statistics included).
//! [`ModelCard::load`] validates the card; [`Network::load`] builds the architecture it names and loads the
//! weights, refusing a file whose tensors do not match the architecture.

use crate::distance::{Metric, ScoreMap};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

pub const CARD_FILE: &str = "model.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model directory {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("model card {0} is not valid: {1}")]
    InvalidCard(PathBuf, String),
    #[error("weights {0} do not fit the architecture: {1}")]
    Weights(PathBuf, String),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// How an input image becomes the encoder's tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InputSpec {
    /// Width and height the image is resized to (the whole image, aspect not kept).
    pub width: u32,
    pub height: u32,
    /// 1 = grey, 3 = RGB.
    pub channels: u32,
    /// Per-channel mean and standard deviation applied to pixel values scaled to [0, 1].
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Embed the image and its mirror image and average the two (test-time augmentation).
    #[serde(default)]
    pub mirror_average: bool,
    /// Test-time augmentation: the encoder also embeds these fixed warps of the prepared input and
    /// averages all the embeddings (after the mirror average, if any) before the final normalisation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tta: Vec<TtaWarp>,
    /// How the decoded image is brought to `width × height`.
    #[serde(default)]
    pub preprocess: Preprocess,
}

/// Geometric preprocessing before normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Preprocess {
    /// Resize the whole image to the input size (aspect ratio not kept).
    #[default]
    Resize,
    /// Handwriting on paper: Otsu threshold removes the background, crop to the ink plus `margin` (a
    /// fraction of the ink box), invert so ink is high and paper is 0, fit into the canvas keeping the
    /// aspect ratio, centred. Grey input only. `fit` chooses what is fitted (see [`SignatureFit`]).
    Signature {
        margin: f32,
        #[serde(default, skip_serializing_if = "SignatureFit::is_box")]
        fit: SignatureFit,
    },
    /// A face photo: detect faces (MTCNN), align the chosen face by fitting a similarity transform from
    /// `template` — where MTCNN's five landmarks (left eye, right eye, nose, mouth corners) belong, in
    /// chip pixels — to the detected landmarks, then sample a `width × height` chip. With `detect=false` an
    /// image is taken as a ready chip (resized if needed).
    FaceChip { template: [[f32; 2]; 5] },
}

/// How a signature's ink is placed on the canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureFit {
    /// The ink's bounding box (plus the margin) fills the canvas: a long flourish shrinks the rest.
    #[default]
    Box,
    /// The ink's centre of mass goes to the canvas centre and its spread sets the scale: the canvas spans
    /// ±[`MOMENT_SPAN`] standard deviations of the ink's x and y (the tighter of the two); ink beyond is cut.
    Moments,
}

/// One fixed warp of the prepared input for [`InputSpec::tta`], as training's augmentation draws them
/// (`crate::train::augment`): about the canvas centre, bilinear, edges replicated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TtaWarp {
    /// Rotation, degrees.
    #[serde(default)]
    pub rotate_deg: f32,
    /// Scale factor (1 = unchanged).
    #[serde(default = "one")]
    pub scale: f32,
    /// Horizontal shear (x += shear · y, y from the centre).
    #[serde(default)]
    pub shear: f32,
    /// Width factor (1 = unchanged).
    #[serde(default = "one")]
    pub aspect: f32,
    /// Shift, as fractions of the width and height.
    #[serde(default)]
    pub shift_x: f32,
    #[serde(default)]
    pub shift_y: f32,
}

fn one() -> f32 {
    1.0
}

impl TtaWarp {
    /// The `[2, 3]` matrix that `affine_grid` takes (normalised coordinates, corners aligned) for an input
    /// of `w × h`: output position → source position, the inverse of scale · rotation · shear · width.
    fn theta(&self, w: i64, h: i64) -> [f32; 6] {
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let (i00, i01, i10, i11) =
            crate::train::augment::inverse_map(self.rotate_deg.to_radians(), self.scale, self.shear, self.aspect);
        let (tx, ty) = (self.shift_x * w as f32, self.shift_y * h as f32);
        // Pixel x = cx · (u + 1): source = I · (out − c − t) + c, written in u, v ∈ [−1, 1].
        [i00, i01 * cy / cx, -(i00 * tx + i01 * ty) / cx, i10 * cx / cy, i11, -(i10 * tx + i11 * ty) / cy]
    }

    /// `x` (`[N, C, H, W]`) warped.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        let t = Tensor::from_slice(&self.theta(s[3], s[2])).view([1, 2, 3]).to_device(x.device()).to_kind(x.kind());
        let grid = Tensor::affine_grid_generator(&t.expand([s[0], 2, 3], false), s.as_slice(), true);
        // Bilinear (0), border padding (1), corners aligned.
        x.grid_sampler(&grid, 0, 1, true)
    }
}

/// Canvas half-extent in standard deviations of the ink, for [`SignatureFit::Moments`].
pub const MOMENT_SPAN: f32 = 2.2;

impl SignatureFit {
    pub fn is_box(&self) -> bool {
        *self == SignatureFit::Box
    }
}

impl std::str::FromStr for SignatureFit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "box" => Ok(SignatureFit::Box),
            "moments" => Ok(SignatureFit::Moments),
            _ => Err(format!("signature fit must be box or moments, not {s}")),
        }
    }
}

impl InputSpec {
    pub fn len(&self) -> usize {
        (self.width * self.height * self.channels) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which network, with its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Architecture {
    /// A small VGG-style CNN: per stage `convs` × (conv 3×3 → batch-norm → ReLU) then 2×2 max-pool
    /// (none after the last stage), global average pooling, a linear projection, optional L2 normalisation.
    ConvNet {
        /// Output channels of each stage.
        channels: Vec<i64>,
        /// Convolutions per stage (same length as `channels`).
        convs: Vec<i64>,
        /// Embedding size.
        embedding: i64,
        /// Dropout before the projection while training.
        dropout: f64,
        /// Project embeddings onto the unit sphere.
        l2_normalize: bool,
        /// How the last feature map becomes a vector.
        #[serde(default)]
        head: Head,
    },
    /// dlib's face recognition ResNet (29 convolutions, 128-d output, not unit-length), imported from its
    /// `.dat` file with `siamese import dlib` (see [`crate::dlib`]). Input: 150×150 RGB aligned chip.
    DlibResnet {
        /// Project embeddings onto the unit sphere (dlib's own output is not; its threshold 0.6 assumes that).
        #[serde(default)]
        l2_normalize: bool,
    },
    /// Several encoders trained apart on the same input (`siamese ensemble`), each under `member{i}`: the
    /// embedding is their unit-length embeddings concatenated and divided by √N, so it is unit-length and its
    /// squared Euclidean distance is the mean of the members' squared distances. Members are `conv_net`s with
    /// `l2_normalize`.
    Ensemble { members: Vec<Architecture> },
}

impl Architecture {
    /// Length of the embedding this architecture produces.
    pub fn embedding_size(&self) -> i64 {
        match self {
            Architecture::ConvNet { embedding, .. } => *embedding,
            Architecture::DlibResnet { .. } => 128,
            Architecture::Ensemble { members } => members.iter().map(Architecture::embedding_size).sum(),
        }
    }
}

/// Pooling of the last feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Global average pooling: translation-tolerant, forgets where features were.
    #[default]
    GlobalAverage,
    /// Flatten the whole map: keeps the layout (where the eyes are relative to the mouth).
    Flatten,
    /// Average over a coarse `rows × cols` grid, then flatten: local features plus their rough layout (a
    /// signature's long final stroke is on the right), with far fewer weights than `Flatten`.
    Grid { rows: i64, cols: i64 },
}

impl std::str::FromStr for Head {
    type Err = String;
    /// `global_average` (or `gap`), `flatten`, or `grid:RxC` (e.g. `grid:3x5`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "global_average" | "gap" => Ok(Head::GlobalAverage),
            "flatten" => Ok(Head::Flatten),
            _ => {
                let grid = s.strip_prefix("grid:").and_then(|g| g.split_once('x'));
                match grid.and_then(|(r, c)| Some((r.parse::<i64>().ok()?, c.parse::<i64>().ok()?))) {
                    Some((rows, cols)) if rows > 0 && cols > 0 => Ok(Head::Grid { rows, cols }),
                    _ => Err(format!("head must be global_average, flatten or grid:RxC, not '{s}'")),
                }
            }
        }
    }
}

/// A calibrated decision threshold for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Threshold {
    /// The default threshold: `distance <= value` means "same".
    pub value: f32,
    /// How `value` was chosen (e.g. "EER point on validation identities s31–s35").
    pub method: String,
    /// Threshold at the equal-error-rate point on the calibration set.
    pub at_eer: f32,
    /// Largest threshold whose false-accept rate on the calibration set is at most 1e-3.
    #[serde(rename = "at_far_1e-3")]
    pub at_far_1e3: f32,
    /// Logistic score mapping for this metric.
    pub score: ScoreMap,
}

/// Both metrics' thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Thresholds {
    pub euclidean: Threshold,
    pub cosine: Threshold,
}

impl Thresholds {
    pub fn get(&self, m: Metric) -> &Threshold {
        match m {
            Metric::Euclidean => &self.euclidean,
            Metric::Cosine => &self.cosine,
        }
    }
}

/// The model card: everything needed to run a model and to know how good it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub id: String,
    pub version: u32,
    /// `face` or `signature`.
    pub modality: String,
    pub architecture: Architecture,
    pub input: InputSpec,
    pub embedding_size: i64,
    /// The metric used when a request names none.
    pub default_metric: Metric,
    pub thresholds: Thresholds,
    /// How the model was trained (data, split, hyper-parameters, time).
    #[serde(default)]
    pub training: serde_json::Value,
    /// Evaluation figures (validation and test).
    #[serde(default)]
    pub evaluation: serde_json::Value,
    /// Serve as the default model of its modality (and overall, for `face`) unless the server names one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Verification against an enrolled subject, when calibrated for it (else the pair thresholds and the
    /// service's default rule apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectCalibration>,
}

/// How a probe is compared with an enrolled subject by default: the rule that turns its distances to the
/// subject's samples into one distance, and thresholds calibrated for that rule in the enrolment protocol
/// (`siamese eval --references K --rule R --calibrate-subject`). A subject-level distance is distributed
/// differently from a pair's (the mean of the 3 nearest of 10 references is smaller than a typical pair's),
/// so it needs its own thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubjectCalibration {
    /// `min`, `meanK`, `mean` or `centroid` (see [`crate::gallery::Rule`]).
    pub rule: String,
    /// References per identity in the calibration set.
    pub references: usize,
    pub thresholds: Thresholds,
}

impl ModelCard {
    /// The default subject rule: the card's calibrated one, else the service's.
    pub fn subject_rule(&self) -> crate::gallery::Rule {
        self.subject.as_ref().and_then(|s| crate::gallery::Rule::parse(&s.rule)).unwrap_or(crate::gallery::DEFAULT_RULE)
    }

    /// Thresholds for subject verification and identification under `rule`: the subject calibration when it
    /// was made for this rule, else the pair thresholds.
    pub fn subject_threshold(&self, rule: crate::gallery::Rule, m: Metric) -> &Threshold {
        match &self.subject {
            Some(s) if crate::gallery::Rule::parse(&s.rule) == Some(rule) => s.thresholds.get(m),
            _ => self.thresholds.get(m),
        }
    }
}

impl ModelCard {
    /// Read and validate `dir/model.json`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::Io(path.clone(), e))?;
        let card: ModelCard =
            serde_json::from_str(&text).map_err(|e| ModelError::InvalidCard(path.clone(), e.to_string()))?;
        card.validate().map_err(|m| ModelError::InvalidCard(path, m))?;
        Ok(card)
    }

    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::Io(dir.to_path_buf(), e))?;
        let path = dir.join(CARD_FILE);
        let text = serde_json::to_string_pretty(self).expect("card serialises");
        std::fs::write(&path, text + "\n").map_err(|e| ModelError::Io(path, e))
    }

    /// Check the card's fields agree with each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || !self.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("id '{}' must be non-empty [A-Za-z0-9._-]", self.id));
        }
        if let Some(s) = &self.subject {
            if crate::gallery::Rule::parse(&s.rule).is_none() {
                return Err(format!("subject.rule '{}' is not one of min, meanK, mean, centroid", s.rule));
            }
        }
        let i = &self.input;
        if !(i.channels == 1 || i.channels == 3) {
            return Err(format!("input.channels must be 1 or 3, not {}", i.channels));
        }
        if i.width < 8 || i.height < 8 || i.width > 1024 || i.height > 1024 {
            return Err(format!("input size {}x{} out of range 8..1024", i.width, i.height));
        }
        if i.mean.len() != i.channels as usize || i.std.len() != i.channels as usize {
            return Err("input.mean and input.std need one value per channel".into());
        }
        if i.std.iter().any(|s| *s <= 0.0) {
            return Err("input.std must be positive".into());
        }
        match &self.architecture {
            Architecture::ConvNet { channels, convs, embedding, .. } => {
                if channels.is_empty() || channels.len() != convs.len() {
                    return Err("architecture.channels and .convs must be non-empty and equally long".into());
                }
                if *embedding != self.embedding_size {
                    return Err(format!(
                        "architecture embedding {} != embedding_size {}",
                        embedding, self.embedding_size
                    ));
                }
            }
            Architecture::DlibResnet { .. } => {
                if self.embedding_size != 128 || i.channels != 3 || i.width != 150 || i.height != 150 {
                    return Err("dlib_resnet needs embedding_size 128 and a 150×150 RGB input".into());
                }
            }
            Architecture::Ensemble { members } => {
                if members.len() < 2 {
                    return Err("an ensemble needs at least two members".into());
                }
                for m in members {
                    match m {
                        Architecture::ConvNet { channels, convs, l2_normalize: true, .. }
                            if !channels.is_empty() && channels.len() == convs.len() => {}
                        _ => return Err("ensemble members must be conv_nets with l2_normalize".into()),
                    }
                }
                if self.architecture.embedding_size() != self.embedding_size {
                    return Err(format!(
                        "the members' embeddings add up to {}, not embedding_size {}",
                        self.architecture.embedding_size(),
                        self.embedding_size
                    ));
                }
            }
        }
        for m in Metric::ALL {
            let t = self.thresholds.get(m);
            if !(t.value.is_finite() && t.value > 0.0) {
                return Err(format!("thresholds.{m}.value must be a positive number"));
            }
        }
        Ok(())
    }
}

/// A network built from an [`Architecture`] on a `VarStore` path.
#[derive(Debug)]
pub struct Network {
    body: Body,
    l2_normalize: bool,
    /// Stages below this index run in inference mode even while training (frozen for transfer learning:
    /// their batch-norm statistics stay as loaded).
    pub frozen_stages: usize,
}

#[derive(Debug)]
enum Body {
    ConvNet { stages: Vec<Vec<(nn::Conv2D, nn::BatchNorm)>>, proj: nn::Linear, head: Head, dropout: f64 },
    Dlib(crate::dlib::DlibResNet),
    Ensemble(Vec<Network>),
}

impl Network {
    /// Build the architecture's variables under `p`. Stage `i` lives under `p / "stage{i}"` in optimiser
    /// group `i`, so training can freeze or slow down early stages by name.
    pub fn new(p: &nn::Path, arch: &Architecture, input: &InputSpec) -> Self {
        let in_channels = input.channels as i64;
        match arch {
            Architecture::ConvNet { channels, convs, embedding, dropout, l2_normalize, head } => {
                let mut stages = Vec::new();
                let mut c_in = in_channels;
                for (i, (&c, &n)) in channels.iter().zip(convs).enumerate() {
                    let sp = &p.set_group(i) / format!("stage{i}");
                    let mut layers = Vec::new();
                    for j in 0..n {
                        let cfg = nn::ConvConfig { padding: 1, bias: false, ..Default::default() };
                        let conv = nn::conv2d(&sp / format!("conv{j}"), c_in, c, 3, cfg);
                        let bn = nn::batch_norm2d(&sp / format!("bn{j}"), c, Default::default());
                        layers.push((conv, bn));
                        c_in = c;
                    }
                    stages.push(layers);
                }
                let pools = channels.len() as u32 - 1;
                let features = match head {
                    Head::GlobalAverage => c_in,
                    Head::Flatten => c_in * (input.height >> pools) as i64 * (input.width >> pools) as i64,
                    Head::Grid { rows, cols } => c_in * rows * cols,
                };
                let proj = nn::linear(&p.set_group(channels.len()) / "proj", features, *embedding, Default::default());
                Network {
                    body: Body::ConvNet { stages, proj, head: *head, dropout: *dropout },
                    l2_normalize: *l2_normalize,
                    frozen_stages: 0,
                }
            }
            Architecture::DlibResnet { l2_normalize } => Network {
                body: Body::Dlib(crate::dlib::DlibResNet::new(p)),
                l2_normalize: *l2_normalize,
                frozen_stages: 0,
            },
            Architecture::Ensemble { members } => Network {
                body: Body::Ensemble(
                    members
                        .iter()
                        .enumerate()
                        .map(|(i, m)| Network::new(&(p / format!("member{i}")), m, input))
                        .collect(),
                ),
                l2_normalize: true,
                frozen_stages: 0,
            },
        }
    }

    /// Number of stages (for per-stage learning rates and freezing); the projection is group `num_stages()`.
    pub fn num_stages(&self) -> usize {
        match &self.body {
            Body::ConvNet { stages, .. } => stages.len(),
            Body::Dlib(_) => crate::dlib::STAGES,
            Body::Ensemble(members) => members.iter().map(Network::num_stages).max().unwrap_or(0),
        }
    }

    /// `x`: `[N, C, H, W]` float → `[N, E]` embeddings.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_frozen(x, train, self.frozen_stages)
    }

    /// [`Network::forward`] with the stages below `frozen` in inference mode (an ensemble's members follow
    /// the ensemble's setting).
    fn forward_frozen(&self, x: &Tensor, train: bool, frozen: usize) -> Tensor {
        let e = match &self.body {
            Body::ConvNet { stages, proj, head, dropout } => {
                let last = stages.len() - 1;
                let mut h = x.shallow_clone();
                for (i, stage) in stages.iter().enumerate() {
                    let t = train && i >= frozen;
                    for (conv, bn) in stage {
                        h = bn.forward_t(&conv.forward(&h), t).relu();
                    }
                    if i < last {
                        h = h.max_pool2d_default(2);
                    }
                }
                let h = match head {
                    Head::GlobalAverage => h.adaptive_avg_pool2d([1, 1]).flatten(1, -1),
                    Head::Flatten => h.flatten(1, -1),
                    Head::Grid { rows, cols } => h.adaptive_avg_pool2d([*rows, *cols]).flatten(1, -1),
                };
                proj.forward(&h.dropout(*dropout, train))
            }
            Body::Dlib(net) => net.forward(x),
            Body::Ensemble(members) => {
                let parts: Vec<Tensor> = members.iter().map(|m| m.forward_frozen(x, train, frozen)).collect();
                Tensor::cat(&parts, 1) / (members.len() as f64).sqrt()
            }
        };
        self.finish(e)
    }

    fn finish(&self, e: Tensor) -> Tensor {
        if self.l2_normalize {
            let n = e.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
            e / n
        } else {
            e
        }
    }

    /// Inference embedding, without gradients; with `mirror`, the mean of the image's and its mirror's, and
    /// with `warps`, the mean over those warps of `x` too (test-time augmentation), renormalised.
    pub fn embed_tta(&self, x: &Tensor, mirror: bool, warps: &[TtaWarp]) -> Tensor {
        tch::no_grad(|| {
            if !mirror && warps.is_empty() {
                return self.forward(x, false);
            }
            let n = x.size()[0];
            let mut views = vec![x.shallow_clone()];
            views.extend(warps.iter().map(|w| w.apply(x)));
            if mirror {
                let flipped: Vec<Tensor> = views.iter().map(|v| v.flip([3])).collect();
                views.extend(flipped);
            }
            let all = self.forward(&Tensor::cat(&views, 0), false);
            let k = views.len() as i64;
            self.finish(all.view([k, n, -1]).mean_dim([0i64].as_slice(), false, Kind::Float))
        })
    }
}

/// A model ready to run: its card, its network and the variables behind it.
pub struct LoadedModel {
    pub card: ModelCard,
    pub dir: PathBuf,
    pub vs: nn::VarStore,
    pub net: Network,
    /// The face detector, for command-line evaluation of a model that aligns faces (the server runs its
    /// detector on its own thread instead).
    pub detector: Option<crate::face::Mtcnn>,
    /// Which face the command-line evaluation embeds.
    pub face_select: crate::face::FaceSelect,
}

impl LoadedModel {
    /// Load `dir` (card + weights) onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self, ModelError> {
        let card = ModelCard::load(dir)?;
        let mut vs = nn::VarStore::new(device);
        let net = Network::new(&vs.root(), &card.architecture, &card.input);
        let wpath = dir.join(WEIGHTS_FILE);
        if !wpath.exists() {
            return Err(ModelError::Io(
                wpath,
                std::io::Error::new(std::io::ErrorKind::NotFound, "weights file missing"),
            ));
        }
        vs.load(&wpath).map_err(|e| ModelError::Weights(wpath.clone(), e.to_string()))?;
        vs.freeze();
        Ok(LoadedModel { card, dir: dir.to_path_buf(), vs, net, detector: None, face_select: Default::default() })
    }

    /// Load the face detector beside this model (`../mtcnn-v1`) when the card aligns faces.
    pub fn with_detector(mut self) -> Result<Self, ModelError> {
        if matches!(self.card.input.preprocess, Preprocess::FaceChip { .. }) {
            let d = self.dir.parent().unwrap_or(Path::new(".")).join("mtcnn-v1");
            let det = crate::face::Mtcnn::load(&d, self.vs.device()).map_err(|e| ModelError::Weights(d.clone(), e))?;
            self.detector = Some(det);
        }
        Ok(self)
    }

    /// Embed a batch given as one flat buffer of `n` preprocessed images (`n × C × H × W`, row-major).
    pub fn embed_flat(&self, data: &[f32], n: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        let i = &self.card.input;
        let x = Tensor::from_slice(data)
            .reshape([n as i64, i.channels as i64, i.height as i64, i.width as i64])
            .to_device(self.vs.device());
        let out =
            self.net.embed_tta(&x, i.mirror_average, &i.tta).to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let e = self.card.embedding_size as usize;
        let flat: Vec<f32> = Vec::<f32>::try_from(out.view([-1]))?;
        Ok(flat.chunks(e).map(|c| c.to_vec()).collect())
    }
}

/// Parse `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available).
pub fn parse_device(s: &str) -> Result<Device, String> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err("--device cuda asked for, but CUDA is not available".into())
            }
        }
        s => match s.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n < tch::Cuda::device_count() as usize => Ok(Device::Cuda(n)),
            _ => Err(format!("unknown or unavailable device '{s}'")),
        },
    }
}

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
        modality: first.modality.clone(),
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
            modality: "signature".into(),
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
        assert_eq!((card.embedding_size, card.version, card.modality.as_str()), (14, 3, "signature"));
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
