//! The model card (`model.json`): what a model is, how its input is prepared, its calibrated thresholds and
//! its evaluation figures. Plain data with serde; nothing here runs a network (no `tch`).

use super::{ModelError, CARD_FILE};
use crate::distance::{Metric, Rule, ScoreMap, DEFAULT_RULE};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
        #[serde(default, skip_serializing_if = "SignatureInk::is_relative")]
        ink: SignatureInk,
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

/// How dark a signature's ink is on the canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureInk {
    /// Darkness relative to the paper (`1 − v / paper`): a pen that writes darker stays darker.
    #[default]
    Relative,
    /// The relative darkness scaled so that the ink's median is [`INK_MEDIAN`]: neither the pen, the scanner's
    /// gamma nor a binarised scan changes how dark the strokes look, only their shape and their own shading.
    Normalized,
}

impl SignatureInk {
    pub fn is_relative(&self) -> bool {
        *self == SignatureInk::Relative
    }
}

impl std::str::FromStr for SignatureInk {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "relative" => Ok(SignatureInk::Relative),
            "normalized" => Ok(SignatureInk::Normalized),
            _ => Err(format!("signature ink must be relative or normalized, not {s}")),
        }
    }
}

/// The median ink value on a canvas prepared with [`SignatureInk::Normalized`].
pub const INK_MEDIAN: f32 = 0.5;

/// One fixed warp of the prepared input for [`InputSpec::tta`], as training's augmentation draws them
/// ([`crate::model::warp`], shared with training's augmentation): about the canvas centre, bilinear, edges replicated.
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
    /// Number of stages (layer groups before the head; see `crate::train::groups`).
    pub fn stages(&self) -> usize {
        match self {
            Architecture::ConvNet { channels, .. } => channels.len(),
            Architecture::DlibResnet { .. } => crate::dlib::STAGES,
            Architecture::Ensemble { members } => members.iter().map(Architecture::stages).max().unwrap_or(0),
        }
    }

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

/// What a model verifies, and so what a collection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Face photos (detected and aligned when the model's input is a face chip).
    Face,
    /// Handwritten signatures on paper.
    Signature,
}

impl Modality {
    pub const ALL: [Modality; 2] = [Modality::Face, Modality::Signature];

    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Face => "face",
            Modality::Signature => "signature",
        }
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Modality {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "face" => Ok(Modality::Face),
            "signature" => Ok(Modality::Signature),
            _ => Err(format!("'{s}' is not a modality (face, signature)")),
        }
    }
}

/// A decision on one distance: the one place where a threshold (the card's, or a request's override) and
/// the calibrated score meet a distance — pair verification, subject verification, identification and the
/// command line all decide through [`Threshold::decide`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// `distance <= threshold`.
    pub verified: bool,
    pub distance: f32,
    pub threshold: f32,
    /// Whether `threshold` came from the request rather than the card.
    pub threshold_overridden: bool,
    /// Calibrated probability that the distance is between the same identity.
    pub score: f32,
}

impl Threshold {
    /// The verdict on `distance` at `requested` when given, else at the card's default (`value`).
    pub fn decide(&self, distance: f32, requested: Option<f32>) -> Verdict {
        self.decide_at(distance, requested, self.value)
    }

    /// As [`Threshold::decide`], with another default operating point (identification uses `at_far_1e3`).
    pub fn decide_at(&self, distance: f32, requested: Option<f32>, default: f32) -> Verdict {
        let threshold = requested.unwrap_or(default);
        Verdict {
            verified: distance <= threshold,
            distance,
            threshold,
            threshold_overridden: requested.is_some(),
            score: self.score.score(distance),
        }
    }
}

/// The model card: everything needed to run a model and to know how good it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub id: String,
    pub version: u32,
    pub modality: Modality,
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
    /// `min`, `meanK`, `mean` or `centroid` (see [`Rule`]).
    pub rule: String,
    /// References per identity in the calibration set.
    pub references: usize,
    pub thresholds: Thresholds,
}

impl ModelCard {
    /// The default subject rule: the card's calibrated one, else the service's.
    pub fn subject_rule(&self) -> Rule {
        self.subject.as_ref().and_then(|s| Rule::parse(&s.rule)).unwrap_or(DEFAULT_RULE)
    }

    /// Thresholds for subject verification and identification under `rule`: the subject calibration when it
    /// was made for this rule, else the pair thresholds.
    pub fn subject_threshold(&self, rule: Rule, m: Metric) -> &Threshold {
        match &self.subject {
            Some(s) if Rule::parse(&s.rule) == Some(rule) => s.thresholds.get(m),
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
            if Rule::parse(&s.rule).is_none() {
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
