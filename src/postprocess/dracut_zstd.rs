//! The zstd compressor dracut pipes the initramfs through when the tree's
//! kernel unpacks zstd but the tree has no `zstd` program.
//!
//! dracut then writes the compressed image itself (`--compress PATH`), as
//! it would with the tree's own zstd: the compression runs while dracut's
//! cpio produces the archive, dracut copies a 39 MB image instead of a
//! 140 MB one (corpus-large), and an early cpio (microcode) stays
//! uncompressed in front, where the kernel looks for it. The program is
//! built from `dracut_zstd.c`, static, so it runs in any tree of this
//! machine.
//!
//! Not for: choosing the compression ([`super::kernel::choose_compression`]).

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use sha2::{Digest, Sha256};

/// The program (built by `build.rs`).
const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dracut_zstd"));

/// Its file name in dracut's scratch directory.
const FILE_NAME: &str = "zstd";

/// The program written into a tree for one dracut run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZstdProgram {
    /// Its absolute path in the tree, for `dracut --compress`.
    pub path: String,
    /// sha256 of the program, for the run cache's inputs.
    pub sha256: [u8; 32],
}

/// Write the program into `scratch` (a directory of the tree at `root`,
/// given relative to it).
pub fn set_up(root: &Dir, scratch: &str) -> Result<ZstdProgram> {
    let path = format!("{scratch}/{FILE_NAME}");
    root.atomic_write_with_perms(&path, PROGRAM, Permissions::from_mode(0o755))
        .with_context(|| format!("Writing {path}"))?;
    Ok(ZstdProgram {
        path: format!("/{path}"),
        sha256: Sha256::digest(PROGRAM).into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn compress(program: &std::path::Path, input: &[u8]) -> Vec<u8> {
        let mut child = Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    }

    #[test]
    fn the_program_compresses_what_the_zstd_tool_unpacks_and_always_alike() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("scratch")).unwrap();
        let root =
            Dir::open_ambient_dir(t.path(), cap_std_ext::cap_std::ambient_authority()).unwrap();
        let program = set_up(&root, "scratch").unwrap();
        assert_eq!(program.path, "/scratch/zstd");
        let on_disk = t.path().join("scratch/zstd");
        // Larger than one zstd block and one read, and compressible.
        let content: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let packed = compress(&on_disk, &content);
        assert!(packed.len() < content.len() / 4, "{}", packed.len());
        assert_eq!(&packed[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        let mut zstd = Command::new("zstd")
            .args(["-d", "-c", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        zstd.stdin.take().unwrap().write_all(&packed).unwrap();
        let out = zstd.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(
            out.stdout == content,
            "zstd -d does not give the input back"
        );
        assert!(compress(&on_disk, &content) == packed, "not reproducible");
        // Empty input: an empty frame, which unpacks to nothing.
        let empty = compress(&on_disk, b"");
        assert_eq!(&empty[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    }
}
