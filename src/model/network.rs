//! The networks a card can name, built with `tch::nn`: a small VGG-style CNN, dlib's face ResNet
//! ([`crate::dlib`]), and ensembles of CNNs. Stages are optimiser groups, so training can freeze or slow down
//! the stages nearest the input.

use super::{Architecture, Head, InputSpec, TtaWarp};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

/// A network built from an [`Architecture`] on a `VarStore` path.
#[derive(Debug)]
pub struct Network {
    body: Body,
    l2_normalize: bool,
    /// Stages that run in inference mode even while training (frozen for transfer learning:
    /// their batch-norm statistics stay as loaded).
    pub frozen: Vec<usize>,
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
                    frozen: Vec::new(),
                }
            }
            Architecture::DlibResnet { l2_normalize } => Network {
                body: Body::Dlib(crate::dlib::DlibResNet::new(p)),
                l2_normalize: *l2_normalize,
                frozen: Vec::new(),
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
                frozen: Vec::new(),
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
        self.forward_frozen(x, train, &self.frozen)
    }

    /// [`Network::forward`] with the `frozen` stages in inference mode (an ensemble's members follow
    /// the ensemble's setting).
    fn forward_frozen(&self, x: &Tensor, train: bool, frozen: &[usize]) -> Tensor {
        let e = match &self.body {
            Body::ConvNet { stages, proj, head, dropout } => {
                let last = stages.len() - 1;
                let mut h = x.shallow_clone();
                for (i, stage) in stages.iter().enumerate() {
                    let t = train && !frozen.contains(&i);
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
