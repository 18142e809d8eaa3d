//! Builds the shared object that dracut-install preloads
//! (`src/postprocess/dracut_fastcopy.c`, see `dracut_fastcopy.rs`) with the
//! target's C compiler, into `OUT_DIR`, for `include_bytes!`.

use std::path::PathBuf;

fn main() {
    let source = "src/postprocess/dracut_fastcopy.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("dracut_fastcopy.so");
    let compiler = cc::Build::new().get_compiler();
    let status = compiler
        .to_command()
        .args([
            "-shared",
            "-fPIC",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fno-stack-protector",
            "-Wl,-z,defs",
            "-o",
        ])
        .arg(&out)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler {:?}: {e}", compiler.path()));
    assert!(status.success(), "compiling {source} failed: {status}");
}
