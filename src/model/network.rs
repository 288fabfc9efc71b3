//! The networks a card can name, built with `tch::nn`: a small VGG-style CNN, dlib's face ResNet
//! ([`crate::dlib`]), and ensembles of CNNs. Stages are optimiser groups, so training can freeze or slow down
//! the stages nearest the input. For inference on the CPU a network can carry a oneDNN plan of its
//! weights ([`super::onednn`]), which its inference forward pass then runs.

use super::onednn::{dense, to_mkldnn, Conv, PlanError};
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
    /// The oneDNN plan for CPU inference, once [`Network::prepare_cpu_inference`] built it.
    plan: Option<Plan>,
}

#[derive(Debug)]
enum Plan {
    ConvNet { stages: Vec<Vec<Conv>>, proj: (Tensor, Option<Tensor>), head: Head },
    Dlib(crate::dlib::DlibPlan),
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
                    plan: None,
                }
            }
            Architecture::DlibResnet { l2_normalize } => Network {
                body: Body::Dlib(crate::dlib::DlibResNet::new(p)),
                l2_normalize: *l2_normalize,
                frozen: Vec::new(),
                plan: None,
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
                plan: None,
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

    /// Build the oneDNN plan of the current weights (an ensemble: one per member), so inference on the CPU
    /// runs it; training is unaffected. Weights changed later are not seen by the plan: build it again.
    pub fn prepare_cpu_inference(&mut self) -> Result<(), PlanError> {
        self.plan = match &mut self.body {
            Body::ConvNet { stages, proj, head, .. } => {
                let mut planned = Vec::new();
                for stage in stages.iter() {
                    let convs = stage.iter().map(|(c, bn)| Conv::folded(&c.ws, c.bs.as_ref(), bn, 1, 1));
                    planned.push(convs.collect::<Result<Vec<_>, _>>()?);
                }
                let w = tch::no_grad(|| proj.ws.detach().contiguous());
                let b = proj.bs.as_ref().map(|b| b.detach());
                Some(Plan::ConvNet { stages: planned, proj: (w, b), head: *head })
            }
            Body::Dlib(net) => Some(Plan::Dlib(net.onednn_plan()?)),
            Body::Ensemble(members) => {
                for m in members.iter_mut() {
                    m.prepare_cpu_inference()?;
                }
                None
            }
        };
        Ok(())
    }

    /// The plan's forward pass (before the final normalisation), or `None` without a plan.
    fn forward_planned(&self, x: &Tensor) -> Option<Result<Tensor, PlanError>> {
        let plan = self.plan.as_ref()?;
        Some(match plan {
            Plan::Dlib(p) => p.forward(x),
            Plan::ConvNet { stages, proj, head } => (|| {
                let last = stages.len() - 1;
                let mut h = to_mkldnn(&x.contiguous())?;
                for (i, stage) in stages.iter().enumerate() {
                    for conv in stage {
                        h = conv.run(&h);
                        let _ = h.relu_();
                    }
                    if i < last {
                        h = h.max_pool2d_default(2);
                    }
                }
                let h = dense(&h);
                let h = match head {
                    Head::GlobalAverage => h.adaptive_avg_pool2d([1, 1]).flatten(1, -1),
                    Head::Flatten => h.flatten(1, -1),
                    Head::Grid { rows, cols } => h.adaptive_avg_pool2d([*rows, *cols]).flatten(1, -1),
                };
                Ok(h.linear(&proj.0, proj.1.as_ref()))
            })(),
        })
    }

    /// `x`: `[N, C, H, W]` float → `[N, E]` embeddings.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_frozen(x, train, &self.frozen)
    }

    /// [`Network::forward`] with the `frozen` stages in inference mode (an ensemble's members follow
    /// the ensemble's setting).
    fn forward_frozen(&self, x: &Tensor, train: bool, frozen: &[usize]) -> Tensor {
        if !train {
            match self.forward_planned(x) {
                Some(Ok(e)) => return self.finish(e),
                Some(Err(e)) => tracing::warn!(error = %e, "oneDNN plan failed; running the plain modules"),
                None => {}
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(c: u32, h: u32, w: u32) -> InputSpec {
        serde_json::from_value(serde_json::json!({
            "width": w, "height": h, "channels": c, "mean": vec![0.5; c as usize], "std": vec![0.5; c as usize]
        }))
        .expect("spec")
    }

    /// The oneDNN plan computes what the plain modules compute (random weights, batch-norm statistics far
    /// from the identity, so folding them is exercised), for every architecture and head.
    #[test]
    fn the_onednn_plan_matches_the_plain_modules() {
        if !super::super::onednn::enabled() {
            eprintln!("libtorch without oneDNN: nothing to compare");
            return;
        }
        tch::manual_seed(7);
        let conv = |head: serde_json::Value| {
            serde_json::json!({"kind": "conv_net", "channels": [8, 16, 16], "convs": [1, 2, 1], "embedding": 24,
                "dropout": 0.3, "l2_normalize": true, "head": head})
        };
        let cases = [
            (serde_json::json!({"kind": "dlib_resnet", "l2_normalize": false}), spec(3, 150, 150)),
            (conv(serde_json::json!({"grid": {"rows": 3, "cols": 5}})), spec(1, 155, 220)),
            (conv(serde_json::json!("global_average")), spec(1, 64, 64)),
            (conv(serde_json::json!("flatten")), spec(1, 32, 40)),
            (
                serde_json::json!({"kind": "ensemble", "members": [conv(serde_json::json!("global_average")),
                conv(serde_json::json!({"grid": {"rows": 2, "cols": 2}}))]}),
                spec(1, 48, 56),
            ),
        ];
        for (arch, input) in cases {
            let arch: Architecture = serde_json::from_value(arch).expect("architecture");
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let mut net = Network::new(&vs.root(), &arch, &input);
            tch::no_grad(|| {
                for (name, mut t) in vs.variables() {
                    if name.ends_with("running_mean") || name.ends_with("running_var") || name.contains(".bn") {
                        t.copy_(&(Tensor::rand_like(&t) + 0.5));
                    }
                }
            });
            let x = Tensor::randn(
                [3, input.channels as i64, input.height as i64, input.width as i64],
                tch::kind::FLOAT_CPU,
            );
            let plain = tch::no_grad(|| net.forward(&x, false));
            net.prepare_cpu_inference().expect("plan");
            assert!(net.plan.is_some() || matches!(net.body, Body::Ensemble(_)), "{arch:?}: no plan");
            let planned = tch::no_grad(|| net.forward(&x, false));
            let diff = (&planned - &plain).abs().max().double_value(&[]);
            let scale = plain.abs().max().double_value(&[]);
            assert!(diff <= 1e-4 * scale.max(1.0), "{arch:?}: plan differs by {diff} (scale {scale})");
            // Training still runs the modules (the plan is for inference only).
            let _ = net.forward(&x, true);
        }
    }
}
