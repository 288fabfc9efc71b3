//! CPU inference through oneDNN (mkldnn) tensors: what PyTorch's `optimize_for_inference` does, built once
//! when a model is loaded. Convolution weights are reordered into oneDNN's blocked layout once (not on every
//! call), batch-norm is folded into the convolution before it, and activations stay in oneDNN's layout
//! between layers (ReLU and the residual add in place), leaving it only where an operation has no oneDNN
//! kernel (dlib's zero-padded add after a down-sampling block, a grid pool whose size does not divide).
//!
//! Only for inference on the CPU; training runs the `tch::nn` modules of [`super::Network`], which hold the
//! same variables. `SIAMESE_ONEDNN=0` turns the plan off (the plain modules then serve inference too).

use tch::{Kind, Tensor};

/// Errors building a plan (a libtorch without oneDNN, an operation it refuses).
#[derive(Debug, thiserror::Error)]
#[error("oneDNN plan: {0}")]
pub struct PlanError(String);

impl PlanError {
    pub fn new(msg: impl Into<String>) -> Self {
        PlanError(msg.into())
    }
}

/// `t` (dense, CPU, f32) as a oneDNN tensor. tch 0.24 generates no safe wrapper for `to_mkldnn`; the C
/// function is torch-sys's, with libtorch's error read back as tch's own wrappers do.
pub fn to_mkldnn(t: &Tensor) -> Result<Tensor, PlanError> {
    let mut out = [std::ptr::null_mut(); 1];
    let mut src = t.shallow_clone();
    // SAFETY: `src` is a live tensor for the whole call; `out` receives a new tensor handle (or stays null
    // when libtorch reports an error, which is read and cleared right after).
    unsafe { torch_sys::c_generated::atg_to_mkldnn(out.as_mut_ptr(), src.as_mut_ptr(), -1) };
    // SAFETY: the error string, when set, is a malloc'd C string that the caller frees.
    let err = unsafe { torch_sys::get_and_reset_last_err() };
    if !err.is_null() {
        let msg = unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned();
        unsafe { libc::free(err as *mut libc::c_void) };
        return Err(PlanError(msg.lines().next().unwrap_or_default().to_string()));
    }
    if out[0].is_null() {
        return Err(PlanError("to_mkldnn returned no tensor".into()));
    }
    // SAFETY: a non-null handle just returned by libtorch, owned by nobody else.
    Ok(unsafe { Tensor::from_ptr(out[0]) })
}

/// A convolution with its weight reordered for oneDNN and its bias as a oneDNN tensor.
#[derive(Debug)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv {
    /// From a dense `[O, I, K, K]` weight and `[O]` bias (batch-norm already folded in).
    pub fn new(weight: &Tensor, bias: &Tensor, stride: i64, padding: i64) -> Result<Self, PlanError> {
        let w = tch::no_grad(|| weight.detach().to_kind(Kind::Float).contiguous());
        let w = to_mkldnn(&w)?
            .f_mkldnn_reorder_conv2d_weight([padding, padding], [stride, stride], [1, 1], 1, None::<&[i64]>)
            .map_err(|e| PlanError(e.to_string()))?;
        let b = to_mkldnn(&tch::no_grad(|| bias.detach().to_kind(Kind::Float).contiguous()))?;
        Ok(Conv { weight: w, bias: b, stride, padding })
    }

    /// From a convolution followed by an inference-mode batch-norm: `w' = w·γ/σ`, `b' = β + (b − μ)·γ/σ`,
    /// `σ = √(var + ε)` with tch's default ε (the one [`super::Network`] builds its batch-norms with).
    pub fn folded(
        weight: &Tensor,
        bias: Option<&Tensor>,
        bn: &tch::nn::BatchNorm,
        stride: i64,
        padding: i64,
    ) -> Result<Self, PlanError> {
        tch::no_grad(|| {
            let o = weight.size()[0];
            let ones = Tensor::ones([o], (Kind::Float, weight.device()));
            let zeros = Tensor::zeros([o], (Kind::Float, weight.device()));
            let gamma = bn.ws.as_ref().map_or(ones, |t| t.detach());
            let beta = bn.bs.as_ref().map_or(zeros.shallow_clone(), |t| t.detach());
            let scale = gamma / (bn.running_var.detach() + BN_EPS).sqrt();
            let b = bias.map_or(zeros, |t| t.detach());
            let w = weight.detach() * scale.view([o, 1, 1, 1]);
            let b = beta + (b - bn.running_mean.detach()) * &scale;
            Conv::new(&w, &b, stride, padding)
        })
    }

    /// Run on a oneDNN tensor; the result is a oneDNN tensor.
    pub fn run(&self, x: &Tensor) -> Tensor {
        x.mkldnn_convolution(
            &self.weight,
            Some(&self.bias),
            [self.padding, self.padding],
            [self.stride, self.stride],
            [1, 1],
            1,
        )
    }
}

/// ε of `tch::nn::BatchNormConfig::default()`.
const BN_EPS: f64 = 1e-5;

/// Back to a dense, contiguous tensor.
pub fn dense(x: &Tensor) -> Tensor {
    x.to_dense(None::<Kind>, false)
}

/// Whether plans are wanted (`SIAMESE_ONEDNN` is not `0`) and libtorch has oneDNN.
pub fn enabled() -> bool {
    std::env::var("SIAMESE_ONEDNN").map_or(true, |v| v != "0") && tch::utils::has_mkldnn()
}
