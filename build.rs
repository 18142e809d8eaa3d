//! Builds the two C helpers dracut gets while ostree-composer builds an
//! initramfs, with the target's C compiler, into `OUT_DIR`, for
//! `include_bytes!`:
//! - `dracut_fastcopy.so`, preloaded into dracut-install
//!   (`src/postprocess/dracut_fastcopy.c`, see `dracut_fastcopy.rs`);
//! - `dracut_ldd`, a static program dracut runs as its `ldd`
//!   (`src/postprocess/dracut_ldd.c`, see `dracut_ldd.rs`);
//! - `dracut_zstd`, a static program dracut compresses the initramfs with,
//!   linked with the build host's libzstd (`src/postprocess/dracut_zstd.c`,
//!   see `dracut_zstd.rs`).

use std::path::{Path, PathBuf};

const WARNINGS: [&str; 3] = ["-Wall", "-Wextra", "-Werror"];

fn compile(source: &str, out: &Path, flags: &[&str], libs: &[&str]) {
    println!("cargo:rerun-if-changed={source}");
    let compiler = cc::Build::new().get_compiler();
    let status = compiler
        .to_command()
        .args(flags)
        .args(WARNINGS)
        .arg("-O2")
        .arg("-o")
        .arg(out)
        .arg(source)
        .args(libs)
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler {:?}: {e}", compiler.path()));
    assert!(status.success(), "compiling {source} failed: {status}");
}

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    compile(
        "src/postprocess/dracut_fastcopy.c",
        &out_dir.join("dracut_fastcopy.so"),
        &["-shared", "-fPIC", "-fno-stack-protector", "-Wl,-z,defs"],
        &[],
    );
    // Static: it runs chrooted in the tree, whose C library may be older.
    compile(
        "src/postprocess/dracut_ldd.c",
        &out_dir.join("dracut_ldd"),
        &["-static", "-s"],
        &[],
    );
    compile(
        "src/postprocess/dracut_zstd.c",
        &out_dir.join("dracut_zstd"),
        &["-static", "-s"],
        &["-lzstd"],
    );
}
