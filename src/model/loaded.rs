//! A model ready to run: its card, its network and the variables behind it, on one device.

use super::{ModelCard, ModelError, Network, WEIGHTS_FILE};
use std::path::{Path, PathBuf};
use tch::nn;
use tch::{Device, Kind, Tensor};

/// A model ready to run: its card, its network and the variables behind it.
pub struct LoadedModel {
    pub card: ModelCard,
    pub dir: PathBuf,
    pub vs: nn::VarStore,
    pub net: Network,
}

impl LoadedModel {
    /// Load `dir` (card + weights) onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self, ModelError> {
        let card = ModelCard::load(dir)?;
        let mut vs = nn::VarStore::new(device);
        let mut net = Network::new(&vs.root(), &card.architecture, &card.input);
        let wpath = dir.join(WEIGHTS_FILE);
        if !wpath.exists() {
            return Err(ModelError::Io(
                wpath,
                std::io::Error::new(std::io::ErrorKind::NotFound, "weights file missing"),
            ));
        }
        vs.load(&wpath).map_err(|e| ModelError::Weights(wpath.clone(), e.to_string()))?;
        vs.freeze();
        if device == Device::Cpu && super::onednn::enabled() {
            if let Err(e) = net.prepare_cpu_inference() {
                tracing::warn!(model = %card.id, error = %e, "no oneDNN plan; inference runs the plain modules");
            }
        }
        Ok(LoadedModel { card, dir: dir.to_path_buf(), vs, net })
    }

    /// Embed a batch given as one flat buffer of `n` preprocessed images (`n × C × H × W`, row-major),
    /// mirror-averaged as the card says.
    pub fn embed_flat(&self, data: &[f32], n: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        self.embed_flat_with(data, n, self.card.input.mirror_average, true)
    }

    /// [`LoadedModel::embed_flat`] with mirror averaging (it doubles the work) and the card's test-time
    /// warps (each one more pass) chosen by the caller; with neither, one pass of the network.
    pub fn embed_flat_with(
        &self,
        data: &[f32],
        n: usize,
        mirror: bool,
        tta: bool,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let i = &self.card.input;
        let x = Tensor::from_slice(data)
            .reshape([n as i64, i.channels as i64, i.height as i64, i.width as i64])
            .to_device(self.vs.device());
        let out = self
            .net
            .embed_tta(&x, mirror, if tta { &i.tta } else { &[] })
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let e = self.card.embedding_size as usize;
        let flat: Vec<f32> = Vec::<f32>::try_from(out.view([-1]))?;
        Ok(flat.chunks(e).map(|c| c.to_vec()).collect())
    }
}

/// Parse `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available).
pub fn parse_device(s: &str) -> Result<Device, ModelError> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err(ModelError::Device("cuda (CUDA is not available)".into()))
            }
        }
        s => match s.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n < tch::Cuda::device_count() as usize => Ok(Device::Cuda(n)),
            _ => Err(ModelError::Device(s.to_string())),
        },
    }
}
