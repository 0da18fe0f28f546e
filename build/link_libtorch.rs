//! Build script shared by the crates whose binaries and tests load libtorch.
//!
//! - An rpath to the libtorch the build used, so `effnas` and the tests run without
//!   `LD_LIBRARY_PATH`.
//! - `libtorch_cuda` linked with `--no-as-needed`: nothing references its symbols directly, so an
//!   as-needed link drops it and CUDA is then silently unavailable even on a GPU machine.
//!
//! torch-sys exports its library folder as `DEP_TCH_LIBTORCH_LIB` to direct dependents.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB is not set: no rpath to libtorch (run scripts/setup)");
        return;
    };
    // The real folder, not the checkout's .libtorch link, so a copied binary still finds it.
    let lib = std::fs::canonicalize(&lib).map_or(lib, |p| p.display().to_string());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
