//! Compiles `src/opcount.cpp` against the libtorch that torch-sys links (its headers sit beside
//! its library folder, which torch-sys exports as `DEP_TCH_LIBTORCH_LIB`).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/opcount.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("DEP_TCH_LIBTORCH_LIB is not set: torch-sys found no libtorch (run scripts/setup)");
    };
    let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| PathBuf::from(&lib));
    let root = lib.parent().map_or_else(|| lib.clone(), PathBuf::from);
    cc::Build::new()
        .cpp(true)
        .file("src/opcount.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        // PyPI's torch 2.11 is built with the C++11 string ABI (torch._C._GLIBCXX_USE_CXX11_ABI);
        // the functions used here pass no std::string either way.
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("effnas_opcount");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
    // This crate's own tests find libtorch without LD_LIBRARY_PATH (dependents set their own).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
