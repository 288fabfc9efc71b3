//! Link-time glue for libtorch.
//!
//! `torch-sys` tells us (through `links = "tch"`) where the libtorch shared libraries live. We:
//! - force-link `libtorch_cuda` with `--no-as-needed`: nothing in our code references a CUDA symbol
//!   directly, so without this the linker drops the library and CUDA is silently unavailable at run time;
//! - set a RUNPATH to that directory so `target/release/siamese` runs without `LD_LIBRARY_PATH`
//!   (which, being searched first, still overrides it on a GPU host with its own torch).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let dir = Path::new(&lib);
    if dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        println!("cargo:rustc-cfg=siamese_cuda_linked");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:rustc-check-cfg=cfg(siamese_cuda_linked)");
}
