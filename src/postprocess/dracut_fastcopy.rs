//! Faster file copies for dracut on filesystems that cannot clone.
//!
//! dracut-install puts each file into the initramfs staging directory with
//! `ioctl(FICLONE)`; on ext4, xfs without reflink or overlayfs that fails and
//! it forks `cp` for every file instead (about a thousand processes, a
//! quarter of dracut's time on corpus-large). The object built from
//! `dracut_fastcopy.c` answers that ioctl with an in-kernel copy and keeps
//! the permission bits `cp --preserve=mode` would, so the initramfs is the
//! same bytes (tested on corpus-large). It is preloaded into dracut-install
//! only, through dracut's `DRACUT_INSTALL` variable (`env LD_PRELOAD=...
//! dracut-install`), never into dracut's shell or the programs it probes,
//! and it removes itself from the environment of dracut-install's children.
//!
//! It is used only when the tree has `env` and a dracut-install built for
//! the same machine as this program; otherwise, or with
//! `--no-dracut-fast-copy`, dracut runs as it comes.
//!
//! Not for: other tools than dracut-install.

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use sha2::{Digest, Sha256};

/// The object preloaded into dracut-install (built by `build.rs`).
const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dracut_fastcopy.so"));

/// Its file name in dracut's scratch directory.
const FILE_NAME: &str = "fastcopy.so";

/// Where dracut finds dracut-install, and where trees have `env`.
const DRACUT_INSTALL: &str = "usr/lib/dracut/dracut-install";
const ENV: &str = "usr/bin/env";

/// The preload set up for one dracut run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastCopy {
    /// The value of `DRACUT_INSTALL` for dracut.
    pub dracut_install: String,
    /// sha256 of the object, for the run cache's inputs.
    pub object_sha256: [u8; 32],
}

/// The ELF class and machine of an ELF header, or `None` for anything
/// else. Pure.
fn elf_machine(header: &[u8]) -> Option<(u8, u16)> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    let machine = match header[5] {
        1 => u16::from_le_bytes([header[18], header[19]]),
        2 => u16::from_be_bytes([header[18], header[19]]),
        _ => return None,
    };
    Some((header[4], machine))
}

/// Whether an object with ELF header `object` can be loaded into a program
/// with ELF header `program`. Pure.
pub fn loads_into(object: &[u8], program: &[u8]) -> bool {
    matches!((elf_machine(object), elf_machine(program)), (Some(a), Some(b)) if a == b)
}

/// `DRACUT_INSTALL` for a preload of `object` (absolute paths in the
/// tree). Pure.
pub fn dracut_install_value(env: &str, object: &str, dracut_install: &str) -> String {
    format!("{env} LD_PRELOAD={object} {dracut_install}")
}

/// Write the object into `scratch` (a directory of the tree at `root`,
/// given relative to it) and return how to preload it, or `None` (with the
/// reason printed) when the tree's dracut-install cannot take it.
pub fn set_up(root: &Dir, scratch: &str) -> Result<Option<FastCopy>> {
    let mut header = [0u8; 20];
    let program = match root.open_optional(DRACUT_INSTALL) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        // E.g. an absolute symlink, which the tree's root does not resolve
        // here (dracut, chrooted, would): only the speed-up is lost.
        Err(e) => {
            eprintln!("note: cannot open /{DRACUT_INSTALL} ({e}); dracut copies files with cp");
            return Ok(None);
        }
    };
    let is_elf = std::io::Read::read_exact(&mut &program, &mut header).is_ok();
    if !is_elf || !loads_into(OBJECT, &header) {
        eprintln!(
            "note: /{DRACUT_INSTALL} is not a program for this machine; dracut copies files with cp"
        );
        return Ok(None);
    }
    if root
        .symlink_metadata_optional(ENV)
        .with_context(|| format!("Querying {ENV}"))?
        .is_none()
    {
        eprintln!("note: the tree has no /{ENV}; dracut copies files with cp");
        return Ok(None);
    }
    let path = format!("{scratch}/{FILE_NAME}");
    root.atomic_write_with_perms(&path, OBJECT, Permissions::from_mode(0o644))
        .with_context(|| format!("Writing {path}"))?;
    Ok(Some(FastCopy {
        dracut_install: dracut_install_value(
            &format!("/{ENV}"),
            &format!("/{path}"),
            &format!("/{DRACUT_INSTALL}"),
        ),
        object_sha256: Sha256::digest(OBJECT).into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;

    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = b"\x7fELF".to_vec();
        h.extend([class, data, 1]);
        h.resize(18, 0);
        h.extend(if data == 1 {
            machine.to_le_bytes()
        } else {
            machine.to_be_bytes()
        });
        h
    }

    #[test]
    fn the_object_loads_only_into_programs_of_its_machine() {
        let own = std::fs::read("/proc/self/exe").unwrap();
        assert!(loads_into(OBJECT, &own[..20]));
        let (class, machine) = elf_machine(OBJECT).unwrap();
        assert!(loads_into(OBJECT, &header(class, 1, machine)));
        assert!(!loads_into(OBJECT, &header(class, 1, machine + 1)));
        assert!(!loads_into(OBJECT, &header(3 - class, 1, machine)));
        assert!(!loads_into(OBJECT, b"#!/bin/sh\necho not elf\n"));
        assert!(!loads_into(OBJECT, b"\x7fELF"));
        assert_eq!(elf_machine(&header(2, 2, 0x15)), Some((2, 0x15)));
    }

    /// What dracut-install does with the object preloaded, done by Python
    /// (its `fcntl.ioctl` and `os.fchown` call the C library's): clone a
    /// setuid file into one created under umask 022, chown it, then run a
    /// child; and an ioctl that is not a clone.
    #[test]
    fn the_object_copies_keeps_the_mode_through_chown_and_leaves_no_preload() {
        let dir = tempfile::tempdir().unwrap();
        let object = dir.path().join(FILE_NAME);
        std::fs::write(&object, OBJECT).unwrap();
        let src = dir.path().join("src");
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &content).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o4775)).unwrap();
        let dst = dir.path().join("dst");
        let script = r#"
import fcntl, os, subprocess, sys, termios, array
os.umask(0o022)
s = os.open(sys.argv[1], os.O_RDONLY)
d = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o4775)
print(fcntl.ioctl(d, 0x40049409, s))
print(oct(os.fstat(d).st_mode & 0o7777))
os.fchown(d, os.getuid(), os.getgid())
print(oct(os.fstat(d).st_mode & 0o7777))
r, w = os.pipe()
os.write(w, b"12345")
n = array.array("i", [0])
fcntl.ioctl(r, termios.FIONREAD, n)
print(n[0])
print("LD_PRELOAD" in subprocess.run(["env"], capture_output=True, text=True).stdout)
"#;
        // Not through a wrapper script (pyenv): the object leaves no preload
        // to its children, which is what the test checks last.
        let out = std::process::Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .arg(&src)
            .arg(&dst)
            .env("LD_PRELOAD", &object)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            ["0", "0o4775", "0o4775", "5", "False"],
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&dst).unwrap(), content);
    }

    /// A tree whose dracut-install is the given file, and `env`.
    fn tree_with(dracut_install: impl FnOnce(&Path)) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("usr/lib/dracut");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        std::fs::write(t.path().join(ENV), "").unwrap();
        std::fs::create_dir(t.path().join("scratch")).unwrap();
        dracut_install(&lib.join("dracut-install"));
        t
    }

    fn set_up_in(t: &tempfile::TempDir) -> Option<FastCopy> {
        let root =
            Dir::open_ambient_dir(t.path(), cap_std_ext::cap_std::ambient_authority()).unwrap();
        set_up(&root, "scratch").unwrap()
    }

    #[test]
    fn set_up_writes_the_object_only_for_a_program_of_this_machine() {
        let own = tree_with(|p| {
            std::fs::copy("/proc/self/exe", p).unwrap();
        });
        let f = set_up_in(&own).expect("preloads into a program of this machine");
        assert_eq!(
            f.dracut_install,
            "/usr/bin/env LD_PRELOAD=/scratch/fastcopy.so /usr/lib/dracut/dracut-install"
        );
        assert_eq!(
            std::fs::read(own.path().join("scratch").join(FILE_NAME)).unwrap(),
            OBJECT
        );
        // A script, an absolute symlink (not resolvable outside the chroot)
        // and no dracut-install at all: dracut runs as it comes.
        let script = tree_with(|p| {
            std::fs::write(
                p,
                "#!/bin/sh
",
            )
            .unwrap()
        });
        assert_eq!(set_up_in(&script), None);
        let absolute = tree_with(|p| std::os::unix::fs::symlink("/bin/true", p).unwrap());
        assert_eq!(set_up_in(&absolute), None);
        let none = tree_with(|_| {});
        assert_eq!(set_up_in(&none), None);
        for t in [script, absolute, none] {
            assert!(!t.path().join("scratch").join(FILE_NAME).exists());
        }
        // No env: no preload either.
        let no_env = tree_with(|p| {
            std::fs::copy("/proc/self/exe", p).unwrap();
        });
        std::fs::remove_file(no_env.path().join(ENV)).unwrap();
        assert_eq!(set_up_in(&no_env), None);
    }

    #[test]
    fn dracut_install_runs_through_env_with_the_preload() {
        assert_eq!(
            dracut_install_value(
                "/usr/bin/env",
                "/scratch/fastcopy.so",
                "/usr/lib/dracut/dracut-install"
            ),
            "/usr/bin/env LD_PRELOAD=/scratch/fastcopy.so /usr/lib/dracut/dracut-install"
        );
    }
}
