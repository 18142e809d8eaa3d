//! Kernel and initramfs of a bootable tree (§4.7 step 10).
//!
//! Finds the one kernel, refreshes its module index with depmod, builds the
//! initramfs with the tree's own dracut (chrooted, since a rootless container
//! cannot make the mounts bwrap needs), and lays both out where OSTree looks:
//! `usr/lib/modules/KVER/{vmlinuz,initramfs.img}` (and, for `boot-location:
//! new`, `usr/lib/ostree-boot/vmlinuz-KVER-BOOTCSUM`). Not for container trees
//! (the caller skips it for `container: true`) and not for bootloader
//! configuration.
//!
//! The chroot has no /proc, /sys or device nodes. For the duration of a tool
//! run the tree temporarily gets `etc -> usr/etc` and `lib -> usr/lib` (when
//! missing), a regular empty `dev/null`, and the full passwd/group in
//! `usr/etc`; all of that is undone afterwards, also on failure.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use cap_std_ext::cap_std::ambient_authority;
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use sha2::{Digest, Sha256};

use super::cached_run::{self, DracutRun};
use super::dracut_fastcopy;
use super::dracut_ldd;
use super::dracut_zstd;
use super::early_cpio;
use super::fsutil::list_names;
use super::modules_load;
use super::passwd;

pub use crate::treefile::BootLocation;

/// Options for [`process_kernel`].
#[derive(Debug, Clone, Default)]
pub struct KernelOptions {
    pub boot_location: BootLocation,
    /// `machineid-compat`: true -> empty `usr/etc/machine-id`, false -> none.
    pub machineid_compat: bool,
    /// `no-initramfs`: don't run dracut; use an RPM-shipped
    /// `usr/lib/modules/KVER/initramfs.img` if there is one.
    pub no_initramfs: bool,
    /// `initramfs-args`; `None` means `--no-hostonly`.
    pub initramfs_args: Option<Vec<String>>,
    /// How depmod and dracut run (from the command line).
    pub tools: ToolRuns,
}

pub use super::cached_run::RunCacheOptions;

/// How the kernel step runs the tree's depmod and dracut, from the command
/// line rather than the treefile.
#[derive(Debug, Clone, Default)]
pub struct ToolRuns {
    /// Reuse what depmod and dracut made in an earlier compose from the
    /// same inputs (see [`super::runcache`]).
    pub run_cache: Option<RunCacheOptions>,
    /// Let dracut run as it comes: dracut-install copies files with `cp`
    /// as it does where the filesystem cannot clone, instead of in the
    /// kernel (see [`super::dracut_fastcopy`]), and `ldd` is the tree's
    /// script (see [`super::dracut_ldd`]).
    pub dracut_plain_copy: bool,
}

/// Where the initramfs of the result came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitramfsSource {
    /// Built by the tree's dracut.
    Dracut,
    /// Built by the tree's dracut in an earlier compose from the same
    /// inputs, and copied from the cache.
    Reused,
    /// Shipped by a package (with `no-initramfs`).
    Packaged,
    /// None (with `no-initramfs` and no packaged one).
    None,
}

/// Which depmod ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepmodTool {
    /// The tree's own depmod, chrooted.
    Target,
    /// The host's depmod with `-b ROOT`.
    Host,
    /// The index the tree's depmod wrote in an earlier compose from the same
    /// inputs, restored from the run cache.
    Reused,
}

/// What [`process_kernel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelReport {
    /// Kernel version (the `usr/lib/modules` directory name).
    pub kver: String,
    /// sha256 of vmlinuz ‖ initramfs, hex.
    pub bootcsum: String,
    pub initramfs: InitramfsSource,
    pub depmod: DepmodTool,
}

impl KernelReport {
    /// What the compose JSON says of the kernel. Pure.
    pub fn summary(&self) -> crate::compose::composejson::KernelSummary {
        let initramfs = match self.initramfs {
            InitramfsSource::Dracut => "built",
            InitramfsSource::Reused => "reused",
            InitramfsSource::Packaged => "packaged",
            InitramfsSource::None => "none",
        };
        let module_index = match self.depmod {
            DepmodTool::Reused => "reused",
            DepmodTool::Target | DepmodTool::Host => "written",
        };
        crate::compose::composejson::KernelSummary {
            version: self.kver.clone(),
            initramfs: initramfs.into(),
            module_index: module_index.into(),
        }
    }
}

/// Where the kernel was found (pure result of [`select_kernel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLocation {
    pub kver: String,
    /// Path of vmlinuz relative to the root.
    pub vmlinuz: String,
    /// An RPM-generated initramfs next to a kernel in `usr/lib/ostree-boot`
    /// (to be deleted: we build our own).
    pub ostree_boot_initramfs: Option<String>,
}

const OSTREE_BOOT: &str = "usr/lib/ostree-boot";
const MODULES: &str = "usr/lib/modules";

/// Strip a trailing `-<64 hex>` (a bootcsum) from a kernel version.
fn strip_bootcsum(kver: &str) -> &str {
    if let Some((head, tail)) = kver.rsplit_once('-') {
        if tail.len() == 64 && tail.bytes().all(|b| b.is_ascii_hexdigit()) {
            return head;
        }
    }
    kver
}

/// Pick the kernel from a listing of `usr/lib/ostree-boot` (file names) and
/// of `usr/lib/modules` (`(dir name, has vmlinuz)`). Pure.
///
/// A `vmlinuz-*` in ostree-boot wins (legacy /boot kernels); otherwise exactly
/// one `usr/lib/modules/*/vmlinuz` must exist.
pub fn select_kernel(
    ostree_boot_files: &[String],
    modules_dirs: &[(String, bool)],
) -> Result<KernelLocation> {
    let mut boot_kernels: Vec<&String> = ostree_boot_files
        .iter()
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    boot_kernels.sort();
    match boot_kernels.as_slice() {
        [] => {}
        [one] => {
            let kver = strip_bootcsum(&one["vmlinuz-".len()..]).to_string();
            let initramfs = ostree_boot_files
                .iter()
                .find(|n| {
                    n.as_str() == format!("initramfs-{kver}.img")
                        || n.starts_with(&format!("initramfs-{kver}.img-"))
                })
                .map(|n| format!("{OSTREE_BOOT}/{n}"));
            return Ok(KernelLocation {
                vmlinuz: format!("{OSTREE_BOOT}/{one}"),
                kver,
                ostree_boot_initramfs: initramfs,
            });
        }
        many => bail!(
            "Multiple kernels found in /boot (now {OSTREE_BOOT}): {}; a bootable tree needs exactly one kernel",
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
    if modules_dirs.is_empty() {
        bail!(
            "Unable to find kernel (vmlinuz) in /boot or /usr/lib/modules: /usr/lib/modules is empty. \
             Add a kernel package to the treefile, or set `container: true` for a non-bootable tree"
        );
    }
    let mut with_kernel: Vec<&String> = modules_dirs
        .iter()
        .filter(|(_, has)| *has)
        .map(|(n, _)| n)
        .collect();
    with_kernel.sort();
    match with_kernel.as_slice() {
        [] => {
            let mut names: Vec<&str> = modules_dirs.iter().map(|(n, _)| n.as_str()).collect();
            names.sort();
            bail!(
                "Unable to find kernel (vmlinuz) in /boot or /usr/lib/modules (no vmlinuz in /usr/lib/modules/{{{}}}). \
                 Add a kernel package to the treefile, or set `container: true` for a non-bootable tree",
                names.join(",")
            )
        }
        [one] => Ok(KernelLocation {
            kver: one.to_string(),
            vmlinuz: format!("{MODULES}/{one}/vmlinuz"),
            ostree_boot_initramfs: None,
        }),
        many => bail!(
            "Multiple kernels found in /usr/lib/modules: {}; a bootable tree needs exactly one kernel \
             (remove the extra kernel packages or their directories)",
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// sha256 over vmlinuz followed by the initramfs (if any), hex. This is the
/// OSTree "bootcsum".
pub fn bootcsum(vmlinuz: &mut dyn Read, initramfs: Option<&mut dyn Read>) -> Result<String> {
    let mut h = Sha256::new();
    std::io::copy(vmlinuz, &mut h).context("Reading vmlinuz")?;
    if let Some(i) = initramfs {
        std::io::copy(i, &mut h).context("Reading initramfs")?;
    }
    Ok(hex::encode(h.finalize()))
}

/// Append one newc cpio header + name + data to `out`.
fn cpio_entry(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), name: &str) {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{maj:08x}{min:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
        uid = 0,
        gid = 0,
        mtime = 0,
        size = 0,
        maj = 0,
        min = 0,
        rmaj = rdev.0,
        rmin = rdev.1,
        check = 0
    );
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// An uncompressed newc cpio holding `dev/` and the `dev/urandom` device node
/// (char 1:9, 0666). dracut cannot mknod in a rootless container
/// (`DRACUT_NO_MKNOD`), so — as rpm-ostree does — this is appended to the
/// initramfs (the kernel unpacks concatenated archives); FIPS mode needs the
/// node before devtmpfs is mounted. Pure.
pub fn urandom_cpio() -> Vec<u8> {
    let mut out = Vec::new();
    cpio_entry(&mut out, 1, 0o040755, 2, (0, 0), "dev");
    cpio_entry(&mut out, 2, 0o020666, 1, (1, 9), "dev/urandom");
    cpio_entry(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!");
    out
}

/// Is `path` present in the tree (any type, symlinks not followed)?
fn exists(root: &Dir, path: &str) -> Result<bool> {
    Ok(root
        .symlink_metadata_optional(path)
        .with_context(|| format!("Querying {path}"))?
        .is_some())
}

/// First of `candidates` present in the tree, as an absolute in-tree path.
fn find_tool(root: &Dir, candidates: &[&str]) -> Result<Option<String>> {
    for c in candidates {
        if exists(root, c)? {
            return Ok(Some(format!("/{c}")));
        }
    }
    Ok(None)
}

/// Arguments dracut gets (pure): ours, then the user's `initramfs-args` (or
/// `--no-hostonly`), a fast compressor unless the user chose one, `--kver`.
pub fn dracut_args(
    tmpdir_in_root: &str,
    kver: &str,
    initramfs_args: Option<&[String]>,
    has_ostree_module: bool,
    compressor: Option<&str>,
) -> Vec<String> {
    let mut args = vec!["--reproducible".to_string()];
    if has_ostree_module {
        args.extend(["--add".to_string(), "ostree".to_string()]);
    }
    args.push(format!("--tmpdir={tmpdir_in_root}"));
    args.push("-f".into());
    args.push(format!("{tmpdir_in_root}/initramfs.img"));
    let user: Vec<String> = match initramfs_args {
        Some(a) => a.to_vec(),
        None => vec!["--no-hostonly".to_string()],
    };
    let user_compress = chooses_compression(&user);
    args.extend(user);
    if let (false, Some(c)) = (user_compress, compressor) {
        args.push("--compress".into());
        args.push(c.to_string());
    }
    args.push("--kver".into());
    args.push(kver.to_string());
    args
}

/// dracut flags that choose the initramfs compression.
const COMPRESS_FLAGS: &[&str] = &[
    "--compress",
    "--gzip",
    "--zstd",
    "--xz",
    "--lzma",
    "--bzip2",
    "--lzo",
    "--lz4",
    "--no-compress",
];

/// Whether `args` already choose a compression. Pure.
fn chooses_compression(args: &[String]) -> bool {
    args.iter().any(|a| {
        COMPRESS_FLAGS
            .iter()
            .any(|f| a == f || a.starts_with(&format!("{f}=")))
    })
}

/// The host's `pigz`, used to compress the initramfs on all cores when the
/// tree has no parallel compressor of its own and its kernel cannot unpack
/// zstd (dracut would otherwise gzip on one thread, most of a bootable
/// compose's time).
fn host_pigz() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("pigz"))
            .find(|p| p.is_file())
    })
}

/// How the initramfs gets compressed when the user's `initramfs-args` do not
/// choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitramfsCompression {
    /// dracut runs this compressor of the tree itself (`--compress CMD`).
    InTree(&'static str),
    /// dracut pipes the cpio through ostree-composer's static zstd program
    /// (level 3, see [`super::dracut_zstd`]): the tree's kernel unpacks zstd
    /// (`CONFIG_RD_ZSTD=y`) but the tree has no zstd.
    Zstd,
    /// dracut writes a plain cpio; the host's pigz gzips it on all cores.
    HostPigz(std::path::PathBuf),
    /// Left to dracut (its default is a single-threaded gzip).
    DracutDefault,
}

/// Whether a kernel `.config` says the kernel unpacks zstd initramfs images.
/// Pure.
pub fn kernel_reads_zstd(config: &str) -> bool {
    config.lines().any(|l| l.trim() == "CONFIG_RD_ZSTD=y")
}

/// The fastest compression the tree's kernel can unpack. Pure.
///
/// Order: the tree's zstd (dracut's own pick when it has one), the zstd
/// program ostree-composer brings (0.5 s of one core for a 140 MB image,
/// beside dracut's cpio, where pigz takes 1.9 s on two), the tree's pigz,
/// the host's pigz. zstd is only chosen when the kernel's
/// config is known and enables `CONFIG_RD_ZSTD`; gzip is what every kernel
/// reads and is dracut's default.
pub fn choose_compression(
    tree_zstd: bool,
    tree_pigz: bool,
    kernel_config: Option<&str>,
    host_pigz: Option<std::path::PathBuf>,
) -> InitramfsCompression {
    let zstd_ok = kernel_config.is_some_and(kernel_reads_zstd);
    if tree_zstd && zstd_ok {
        InitramfsCompression::InTree("zstd -T0 -3")
    } else if zstd_ok {
        InitramfsCompression::Zstd
    } else if tree_pigz {
        InitramfsCompression::InTree("pigz -6 -n -T")
    } else if let Some(p) = host_pigz {
        InitramfsCompression::HostPigz(p)
    } else {
        InitramfsCompression::DracutDefault
    }
}

/// Compress `file` in place with the host's pigz (gzip format, no name or
/// timestamp, so the output is reproducible); dracut's early cpio, when
/// there is one, stays uncompressed in front (see [`super::early_cpio`]).
fn compress_with_host_pigz(pigz: &Path, file: &Path) -> Result<()> {
    let mut input = File::open(file).with_context(|| format!("Opening {}", file.display()))?;
    let early = early_cpio::early_cpio_len(&mut std::io::BufReader::new(&input))
        .with_context(|| format!("Reading {}", file.display()))?
        .unwrap_or(0);
    std::io::Seek::rewind(&mut input).with_context(|| format!("Reading {}", file.display()))?;
    let out_path = file.with_extension("img.gz");
    let mut out = std::fs::File::create(&out_path)
        .with_context(|| format!("Creating {}", out_path.display()))?;
    std::io::copy(&mut (&mut input).take(early), &mut out)
        .with_context(|| format!("Writing {}", out_path.display()))?;
    // pigz reads the rest from where the copy stopped and writes after it.
    let status = Command::new(pigz)
        .args(["-6", "-n", "-c"])
        .stdin(input)
        .stdout(out)
        .status()
        .with_context(|| format!("Running {}", pigz.display()))?;
    if !status.success() {
        bail!(
            "{} -6 -n -c < {} failed: {status}",
            pigz.display(),
            file.display()
        );
    }
    std::fs::rename(&out_path, file)
        .with_context(|| format!("Moving {} to {}", out_path.display(), file.display()))
}

/// The tree's kernel config (`usr/lib/modules/KVER/config`, or
/// `config-KVER` of the old /boot, now in usr/lib/ostree-boot), if shipped.
fn read_kernel_config(root: &Dir, kver: &str) -> Result<Option<String>> {
    for p in [
        format!("{MODULES}/{kver}/config"),
        format!("{OSTREE_BOOT}/config-{kver}"),
    ] {
        if let Some(bytes) = root
            .read_optional(&p)
            .with_context(|| format!("Reading {p}"))?
        {
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    Ok(None)
}

/// The stand-in for `/dev/null` the shims make: a regular file the tools
/// write to, so never an input of their runs.
const DEV_NULL: &str = "dev/null";

/// Temporary changes that let tools run chrooted into the tree.
struct ChrootShims {
    created: Vec<String>,
    passwd_backup: Vec<(String, Option<String>)>,
}

impl ChrootShims {
    fn setup(root: &Dir, dev_null: bool, full_passwd: bool) -> Result<Self> {
        let mut shims = ChrootShims {
            created: Vec::new(),
            passwd_backup: Vec::new(),
        };
        let r = shims.setup_inner(root, dev_null, full_passwd);
        if let Err(e) = r {
            if let Err(undo) = shims.undo(root) {
                eprintln!("warning: undoing chroot preparation failed too: {undo:#}");
            }
            return Err(e);
        }
        Ok(shims)
    }

    fn setup_inner(&mut self, root: &Dir, dev_null: bool, full_passwd: bool) -> Result<()> {
        for (link, target) in [("etc", "usr/etc"), ("lib", "usr/lib")] {
            if !exists(root, link)? && exists(root, target)? {
                root.symlink_contents(target, link)
                    .with_context(|| format!("Creating temporary {link} -> {target}"))?;
                self.created.push(link.to_string());
            }
        }
        if dev_null && !exists(root, DEV_NULL)? {
            if !exists(root, "dev")? {
                root.create_dir("dev").context("Creating dev")?;
                self.created.push("dev".into());
            }
            root.atomic_write_with_perms(DEV_NULL, "", Permissions::from_mode(0o666))
                .context("Creating temporary dev/null")?;
            self.created.push(DEV_NULL.into());
        }
        if full_passwd {
            for (etc, lib, is_passwd) in [
                ("usr/etc/passwd", "usr/lib/passwd", true),
                ("usr/etc/group", "usr/lib/group", false),
            ] {
                let Some(libc) = root
                    .read_to_string_optional(lib)
                    .with_context(|| format!("Reading {lib}"))?
                else {
                    continue;
                };
                let etcc = root
                    .read_to_string_optional(etc)
                    .with_context(|| format!("Reading {etc}"))?;
                let merged = if is_passwd {
                    passwd::merge_previous_passwd(Some(etcc.as_deref().unwrap_or("")), Some(&libc))?
                } else {
                    passwd::merge_previous_group(Some(etcc.as_deref().unwrap_or("")), Some(&libc))?
                }
                .unwrap_or_default();
                self.passwd_backup.push((etc.to_string(), etcc));
                root.atomic_write_with_perms(etc, merged, Permissions::from_mode(0o644))
                    .with_context(|| format!("Staging the full {etc}"))?;
            }
        }
        Ok(())
    }

    fn undo(&mut self, root: &Dir) -> Result<()> {
        let mut first_err: Option<anyhow::Error> = None;
        for (path, content) in self.passwd_backup.drain(..) {
            let r = match content {
                Some(c) => root
                    .atomic_write_with_perms(&path, c, Permissions::from_mode(0o644))
                    .with_context(|| format!("Restoring {path}")),
                None => root
                    .remove_file_optional(&path)
                    .map(|_| ())
                    .with_context(|| format!("Removing {path}")),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        for path in self.created.drain(..).rev() {
            let r = if path == "dev" {
                root.remove_dir(&path)
            } else {
                root.remove_file(&path)
            };
            if let Err(e) = r {
                first_err.get_or_insert(
                    anyhow::Error::new(e).context(format!("Removing temporary {path}")),
                );
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Run `f` with the shims in place, always undoing them.
fn with_shims<T>(
    root: &Dir,
    dev_null: bool,
    full_passwd: bool,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let mut shims = ChrootShims::setup(root, dev_null, full_passwd)?;
    let r = f();
    let undo = shims.undo(root);
    let v = r?;
    undo?;
    Ok(v)
}

/// A command run chrooted into `root_path` with a minimal environment.
fn chroot_command(root_path: &Path, program: &str) -> Command {
    let mut c = Command::new("chroot");
    c.arg(root_path).arg(program);
    c.env_clear();
    c.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    c.env("LANG", "C.UTF-8");
    if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
        c.env("SOURCE_DATE_EPOCH", v);
    }
    c
}

pub(super) fn run_status(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("Spawning {what} ({cmd:?})"))?;
    if !status.success() {
        bail!("{what} failed ({status}): {cmd:?}");
    }
    Ok(())
}

/// Run `depmod -a KVER` for the tree: the tree's own depmod chrooted if it
/// has one (or the index it wrote in an earlier compose from the same inputs,
/// with `cache`), else the host's with `-b ROOT`. Checks that `modules.dep`
/// exists afterwards.
pub fn run_depmod(
    root: &Dir,
    root_path: &Path,
    kver: &str,
    cache: Option<&RunCacheOptions>,
) -> Result<DepmodTool> {
    let target = find_tool(root, &["usr/sbin/depmod", "usr/bin/depmod", "sbin/depmod"])?;
    let tool = with_shims(root, true, false, || {
        if let Some(depmod) = &target {
            let mut c = chroot_command(root_path, depmod);
            c.args(["-a", kver]);
            match cache {
                Some(opts) => {
                    let moddir = Path::new(MODULES).join(kver);
                    let ignored = [DEV_NULL.into()];
                    if cached_run::depmod(c, root_path, &moddir, &ignored, opts)? {
                        return Ok(DepmodTool::Reused);
                    }
                }
                None => run_status(c, "depmod (in the tree)")?,
            }
            Ok(DepmodTool::Target)
        } else {
            let mut c = Command::new("depmod");
            c.arg("-b").arg(root_path).args(["-a", kver]);
            run_status(c, "depmod (host, no depmod in the tree)").context(
                "The tree has no depmod (add kmod to packages) and the host's depmod did not work \
                 (install kmod on the host)",
            )?;
            Ok(DepmodTool::Host)
        }
    })?;
    let dep = format!("{MODULES}/{kver}/modules.dep");
    if !exists(root, &dep)? {
        bail!("depmod ran but {dep} was not created");
    }
    Ok(tool)
}

/// Directories a chrooted tool may scribble into that must not change.
const SCRATCH_DIRS: &[&str] = &["var", "run", "tmp"];

/// Entry names of [`SCRATCH_DIRS`] (those that are real directories).
fn snapshot_scratch_dirs(root: &Dir) -> Result<Vec<(String, Vec<std::ffi::OsString>)>> {
    let mut out = Vec::new();
    for d in SCRATCH_DIRS {
        let is_dir = root
            .symlink_metadata_optional(d)
            .with_context(|| format!("Querying {d}"))?
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if !is_dir {
            continue;
        }
        let names = root
            .read_dir(d)
            .with_context(|| format!("Reading {d}"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("Reading {d}"))?;
        out.push((d.to_string(), names));
    }
    Ok(out)
}

/// Remove entries that appeared in [`SCRATCH_DIRS`] since the snapshot.
fn clean_scratch_dirs(root: &Dir, before: &[(String, Vec<std::ffi::OsString>)]) -> Result<()> {
    for (d, old) in before {
        for e in root.read_dir(d).with_context(|| format!("Reading {d}"))? {
            let name = e.with_context(|| format!("Reading {d}"))?.file_name();
            if old.contains(&name) {
                continue;
            }
            let p = Path::new(d).join(&name);
            eprintln!("Removing /{} left by dracut", p.display());
            let is_dir = root
                .symlink_metadata(&p)
                .map(|m| m.is_dir())
                .with_context(|| format!("Querying {}", p.display()))?;
            if is_dir {
                root.remove_dir_all(&p)
            } else {
                root.remove_file(&p)
            }
            .with_context(|| format!("Removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// Build the initramfs with the tree's dracut (or reuse one it built from the
/// same inputs); returns the path of the image relative to the root (inside
/// a temporary directory the caller removes).
fn run_dracut(
    root: &Dir,
    root_path: &Path,
    kver: &str,
    opts: &KernelOptions,
) -> Result<(String, InitramfsSource)> {
    let Some(dracut) = find_tool(root, &["usr/bin/dracut", "usr/sbin/dracut"])? else {
        bail!(crate::exit::invalid_input(
            "The tree has no dracut (/usr/bin/dracut) to build the initramfs: add `dracut` to `packages`, \
             or set `no-initramfs: true` in the treefile"
        ));
    };
    let has_ostree_module = list_names(root, "usr/lib/dracut/modules.d")?
        .iter()
        .any(|(name, _)| name.ends_with("ostree"));
    if !has_ostree_module {
        eprintln!(
            "note: the tree has no ostree dracut module (usr/lib/dracut/modules.d/*ostree); \
             building the initramfs without --add ostree (the tree will not boot as an OSTree deployment \
             unless another module mounts it; add the package shipping it, e.g. `ostree`)"
        );
    }
    let compression = choose_compression(
        find_tool(root, &["usr/bin/zstd"])?.is_some(),
        find_tool(root, &["usr/bin/pigz"])?.is_some(),
        read_kernel_config(root, kver)?.as_deref(),
        host_pigz(),
    );
    let user_compression = opts
        .initramfs_args
        .as_deref()
        .is_some_and(chooses_compression);
    let zstd_program = match (&compression, user_compression) {
        (InitramfsCompression::Zstd, false) => {
            eprintln!(
                "Initramfs: compressed with zstd in dracut's pipeline (the kernel has \
                 CONFIG_RD_ZSTD; the tree has no zstd program, ostree-composer brings one)"
            );
            Some(dracut_zstd::set_up(root, DRACUT_TMPDIR)?)
        }
        _ => None,
    };
    let compressor = match (&compression, &zstd_program) {
        (InitramfsCompression::InTree(cmd), _) => Some(*cmd),
        (_, Some(program)) => Some(program.path.as_str()),
        _ => None,
    };
    let tmp_in_root = format!("/{DRACUT_TMPDIR}");
    let mut args = dracut_args(
        &tmp_in_root,
        kver,
        opts.initramfs_args.as_deref(),
        has_ostree_module,
        compressor,
    );
    add_listed_modules(root, kver, &mut args)?;
    // Compressed here: let dracut write a plain cpio.
    let compress_here = match compression {
        InitramfsCompression::HostPigz(_) if !user_compression => {
            let at = args.len() - 2; // before `--kver KVER`
            args.insert(at, "--no-compress".into());
            Some(compression)
        }
        _ => None,
    };
    let mut cmd = chroot_command(root_path, &dracut);
    cmd.args(&args);
    cmd.env("DRACUT_NO_XATTR", "1");
    cmd.env("DRACUT_NO_MKNOD", "1");
    cmd.env("TMPDIR", &tmp_in_root);
    let (fast_copy, fast_ldd) = match opts.tools.dracut_plain_copy {
        true => (None, None),
        false => (
            dracut_fastcopy::set_up(root, DRACUT_TMPDIR)?,
            dracut_ldd::set_up(root, DRACUT_TMPDIR)?,
        ),
    };
    if let Some(f) = &fast_copy {
        cmd.env("DRACUT_INSTALL", &f.dracut_install);
    }
    if let Some(l) = &fast_ldd {
        cmd.envs(l.env.iter().map(|(k, v)| (k, v)));
    }
    let out = format!("{DRACUT_TMPDIR}/initramfs.img");
    let speed_ups: Vec<&str> = [
        fast_copy
            .as_ref()
            .map(|_| "dracut-install copies in the kernel, not with cp"),
        fast_ldd.as_ref().map(|_| "ldd runs without a shell"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let running = match speed_ups.is_empty() {
        true => format!("Running dracut {}", args.join(" ")),
        false => format!(
            "Running dracut {} ({})",
            args.join(" "),
            speed_ups.join("; ")
        ),
    };
    let before = snapshot_scratch_dirs(root)?;
    let run = with_shims(root, true, true, || match &opts.tools.run_cache {
        Some(cache) => {
            let mut extra = compression_inputs(compress_here.as_ref())?;
            if let Some(z) = &zstd_program {
                extra.extend(format!(" zstd program {}", hex::encode(z.sha256)).bytes());
            }
            if let Some(f) = &fast_copy {
                extra.extend(format!(" fast copy {}", hex::encode(f.object_sha256)).bytes());
            }
            if let Some(l) = &fast_ldd {
                extra.extend(format!(" fast ldd {}", hex::encode(l.inputs_sha256)).bytes());
            }
            let ignored = [DRACUT_TMPDIR.into(), DEV_NULL.into()];
            let out_dir = root_path.join(DRACUT_TMPDIR);
            cached_run::dracut(cmd, &running, &extra, root_path, &out_dir, &ignored, cache)
        }
        None => {
            eprintln!("{running}");
            run_status(cmd, "dracut (in the tree)").map(|()| DracutRun::Built(None))
        }
    });
    // /var is already translated to tmpfiles.d and /run, /tmp are not
    // content: drop whatever dracut left there (bwrap would have had them
    // read-only or on tmpfs).
    let cleaned = clean_scratch_dirs(root, &before);
    let run = run?;
    cleaned?;
    let fingerprint = match run {
        DracutRun::Reused => return Ok((out, InitramfsSource::Reused)),
        DracutRun::Built(f) => f,
    };
    if !exists(root, &out)? {
        bail!("dracut succeeded but wrote no {out}");
    }
    if let Some(InitramfsCompression::HostPigz(pigz)) = compress_here {
        eprintln!(
            "Compressing the initramfs with {} (all cores)",
            pigz.display()
        );
        compress_with_host_pigz(&pigz, &root_path.join(&out))?;
    }
    if let (Some(cache), Some(fingerprint)) = (&opts.tools.run_cache, fingerprint) {
        cached_run::store_initramfs(cache, &fingerprint, &root_path.join(&out));
    }
    Ok((out, InitramfsSource::Dracut))
}

/// Give dracut the modules `/usr/lib/modules-load.d` lists that the
/// kernel has files for (`--add-drivers`, before `--kver KVER`), when the
/// tree's dracut has the systemd module that would have read the list (see
/// [`modules_load`]).
fn add_listed_modules(root: &Dir, kver: &str, args: &mut Vec<String>) -> Result<()> {
    if !exists(root, "usr/lib/dracut/modules.d/00systemd")?
        || !exists(root, "usr/lib/systemd/systemd")?
    {
        return Ok(());
    }
    let listed = modules_load::read_listed(root)?;
    if listed.is_empty() {
        return Ok(());
    }
    let dep_path = format!("{MODULES}/{kver}/modules.dep");
    let dep = root
        .read_to_string_optional(&dep_path)
        .with_context(|| format!("Reading {dep_path}"))?
        .unwrap_or_default();
    let (found, missing) =
        modules_load::split_available(&listed, &modules_load::modules_with_files(&dep));
    if !missing.is_empty() {
        eprintln!(
            "note: /{} lists modules kernel {kver} has no file for (built in, or aliases), not added to the initramfs: {}",
            modules_load::MODULES_LOAD_D,
            missing.join(" ")
        );
    }
    if !found.is_empty() {
        eprintln!(
            "Initramfs: adding the modules /{} lists (dracut cannot read the list without /dev/fd in this chroot): {}",
            modules_load::MODULES_LOAD_D,
            found.join(" ")
        );
        let at = args.len() - 2; // before `--kver KVER`
        args.splice(at..at, ["--add-drivers".to_string(), found.join(" ")]);
    }
    Ok(())
}

/// What the compression done here adds to dracut's inputs: the host pigz
/// binary.
fn compression_inputs(compress_here: Option<&InitramfsCompression>) -> Result<Vec<u8>> {
    Ok(match compress_here {
        Some(InitramfsCompression::HostPigz(pigz)) => {
            let bin = std::fs::read(pigz).with_context(|| format!("Reading {}", pigz.display()))?;
            format!("host pigz {}", hex::encode(Sha256::digest(&bin))).into_bytes()
        }
        _ => b"none".to_vec(),
    })
}

/// dracut's working directory in the tree (see [`process_kernel`]).
const DRACUT_TMPDIR: &str = "ostree-composer-dracut";

/// A directory of fixed name in the tree, removed when dropped (also on
/// failure).
struct ScratchDir {
    path: Option<std::path::PathBuf>,
}

impl ScratchDir {
    fn create(root_path: &Path, name: &str) -> Result<ScratchDir> {
        let path = root_path.join(name);
        std::fs::create_dir(&path).with_context(|| {
            format!(
                "Creating /{name} in the tree for dracut (a package or a postprocess step must \
                 not create it)"
            )
        })?;
        Ok(ScratchDir { path: Some(path) })
    }

    fn remove(mut self) -> Result<()> {
        match self.path.take() {
            Some(p) => std::fs::remove_dir_all(&p)
                .with_context(|| format!("Removing dracut's temporary directory {}", p.display())),
            None => Ok(()),
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            if let Err(e) = std::fs::remove_dir_all(&p) {
                eprintln!("warning: removing {}: {e}", p.display());
            }
        }
    }
}

fn hardlink_replace(root: &Dir, src: &str, dest: &str) -> Result<()> {
    root.remove_file_optional(dest)
        .with_context(|| format!("Removing old {dest}"))?;
    root.hard_link(src, root, dest)
        .with_context(|| format!("Hardlinking {src} to {dest}"))
}

/// Rewrite `.vmlinuz.hmac` lines `HASH  /boot/vmlinuz-KVER` to `HASH  vmlinuz`.
/// Pure.
pub fn relativize_hmac(content: &str) -> String {
    let mut out = String::new();
    for line in content.lines() {
        match line.split_once("  ") {
            Some((hash, path)) if path.starts_with('/') => {
                out.push_str(hash);
                out.push_str("  vmlinuz");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// §4.7 step 10 for a bootable tree; see the module docs.
pub fn process_kernel(root_path: &Path, opts: &KernelOptions) -> Result<KernelReport> {
    let root = Dir::open_ambient_dir(root_path, ambient_authority())
        .with_context(|| format!("Opening {}", root_path.display()))?;
    let root = &root;

    root.remove_all_optional("boot/loader")
        .context("Removing boot/loader")?;

    // kernel-install may have made /boot/<machine-id>/; drop it.
    if let Some(mid) = root
        .read_to_string_optional("usr/etc/machine-id")
        .context("Reading usr/etc/machine-id")?
    {
        if !mid.is_empty() {
            let id = mid.strip_suffix('\n').unwrap_or(&mid);
            if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("invalid machine ID '{id}' in usr/etc/machine-id (expected 32 hex digits and a newline)");
            }
            root.remove_all_optional(format!("boot/{id}"))
                .with_context(|| format!("Removing boot/{id}"))?;
        }
    }

    // Move /boot (bootloader data, legacy kernels) to usr/lib/ostree-boot.
    if root
        .symlink_metadata_optional("boot")
        .context("Querying boot")?
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        if exists(root, OSTREE_BOOT)? {
            // An empty leftover is fine to replace; content is a conflict.
            root.remove_dir(OSTREE_BOOT).with_context(|| {
                format!("Both /boot and {OSTREE_BOOT} have content; remove one of them")
            })?;
        }
        root.create_dir_all("usr/lib").context("Creating usr/lib")?;
        root.rename("boot", root, OSTREE_BOOT)
            .with_context(|| format!("Moving boot to {OSTREE_BOOT}"))?;
    }

    let boot_files: Vec<String> = list_names(root, OSTREE_BOOT)?
        .into_iter()
        .filter(|(_, d)| !d)
        .map(|(n, _)| n)
        .collect();
    let mut modules_dirs = Vec::new();
    for (name, is_dir) in list_names(root, MODULES)? {
        if is_dir {
            let has = root
                .symlink_metadata_optional(format!("{MODULES}/{name}/vmlinuz"))
                .with_context(|| format!("Querying {MODULES}/{name}/vmlinuz"))?
                .map(|m| m.is_file())
                .unwrap_or(false);
            modules_dirs.push((name, has));
        }
    }
    let loc = select_kernel(&boot_files, &modules_dirs)?;
    let kver = loc.kver.clone();
    let moddir = format!("{MODULES}/{kver}");
    eprintln!("Kernel: {kver} ({})", loc.vmlinuz);
    if let Some(i) = &loc.ostree_boot_initramfs {
        eprintln!("Removing RPM-generated '{i}'");
        root.remove_file(i)
            .with_context(|| format!("Removing {i}"))?;
    }
    root.create_dir_all(&moddir)
        .with_context(|| format!("Creating {moddir}"))?;
    let modules_vmlinuz = format!("{moddir}/vmlinuz");
    if loc.vmlinuz != modules_vmlinuz {
        // Legacy location: relocate into the modules directory.
        hardlink_replace(root, &loc.vmlinuz, &modules_vmlinuz)?;
        root.remove_file(&loc.vmlinuz)
            .with_context(|| format!("Removing {}", loc.vmlinuz))?;
    }

    let depmod = run_depmod(root, root_path, &kver, opts.tools.run_cache.as_ref())?;

    if opts.machineid_compat {
        root.atomic_write_with_perms("usr/etc/machine-id", "", Permissions::from_mode(0o444))
            .context("Writing an empty usr/etc/machine-id")?;
    } else {
        root.remove_file_optional("usr/etc/machine-id")
            .context("Removing usr/etc/machine-id")?;
    }

    let modules_initramfs = format!("{moddir}/initramfs.img");
    let source = if opts.no_initramfs {
        if exists(root, &modules_initramfs)? {
            root.set_permissions(&modules_initramfs, Permissions::from_mode(0o644))
                .with_context(|| format!("chmod {modules_initramfs}"))?;
            InitramfsSource::Packaged
        } else {
            InitramfsSource::None
        }
    } else {
        // A fixed name: dracut records its arguments, --tmpdir included, in
        // the image (usr/lib/dracut/build-parameter.txt), so a random name
        // made every initramfs, and every commit, different. The root is
        // this compose's own.
        let tmp = ScratchDir::create(root_path, DRACUT_TMPDIR)?;
        let (built, source) = run_dracut(root, root_path, &kver, opts)?;
        // Append the device-node cpio, then move into place (0644).
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(root_path.join(&built))
                .with_context(|| format!("Opening {built}"))?;
            f.write_all(&urandom_cpio())
                .with_context(|| format!("Appending to {built}"))?;
        }
        root.set_permissions(&built, Permissions::from_mode(0o644))
            .with_context(|| format!("chmod {built}"))?;
        root.rename(&built, root, &modules_initramfs)
            .with_context(|| format!("Moving the initramfs to {modules_initramfs}"))?;
        tmp.remove()?;
        source
    };

    let hmac = format!("{moddir}/.vmlinuz.hmac");
    if let Some(c) = root
        .read_to_string_optional(&hmac)
        .with_context(|| format!("Reading {hmac}"))?
    {
        let rel = relativize_hmac(&c);
        if rel != c {
            root.atomic_write_with_perms(&hmac, rel, Permissions::from_mode(0o644))
                .with_context(|| format!("Writing {hmac}"))?;
        }
    }

    let csum = {
        let mut v = File::open(root_path.join(&modules_vmlinuz))
            .with_context(|| format!("Opening {modules_vmlinuz}"))?;
        if source == InitramfsSource::None {
            bootcsum(&mut v, None)?
        } else {
            let mut i = File::open(root_path.join(&modules_initramfs))
                .with_context(|| format!("Opening {modules_initramfs}"))?;
            bootcsum(&mut v, Some(&mut i))?
        }
    };

    if opts.boot_location == BootLocation::New {
        root.create_dir_all(OSTREE_BOOT)
            .with_context(|| format!("Creating {OSTREE_BOOT}"))?;
        for (name, is_dir) in list_names(root, OSTREE_BOOT)? {
            if !is_dir
                && (name.starts_with(&format!("vmlinuz-{kver}-"))
                    || name.starts_with(&format!("initramfs-{kver}.img-")))
            {
                root.remove_file(format!("{OSTREE_BOOT}/{name}"))
                    .with_context(|| format!("Removing old {OSTREE_BOOT}/{name}"))?;
            }
        }
        hardlink_replace(
            root,
            &modules_vmlinuz,
            &format!("{OSTREE_BOOT}/vmlinuz-{kver}-{csum}"),
        )?;
        if source != InitramfsSource::None {
            hardlink_replace(
                root,
                &modules_initramfs,
                &format!("{OSTREE_BOOT}/initramfs-{kver}.img-{csum}"),
            )?;
        }
    }

    root.create_dir_all("boot").context("Creating boot")?;
    root.set_permissions("boot", Permissions::from_mode(0o755))
        .context("chmod boot")?;

    Ok(KernelReport {
        kver,
        bootcsum: csum,
        initramfs: source,
        depmod,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(v: &[(&str, bool)]) -> Vec<(String, bool)> {
        v.iter().map(|(n, h)| (n.to_string(), *h)).collect()
    }

    #[test]
    fn kernel_in_modules() {
        let loc = select_kernel(&[], &dirs(&[("6.1.0-test", true), ("extra", false)])).unwrap();
        assert_eq!(loc.kver, "6.1.0-test");
        assert_eq!(loc.vmlinuz, "usr/lib/modules/6.1.0-test/vmlinuz");
    }

    #[test]
    fn kernel_errors() {
        let e = select_kernel(&[], &dirs(&[("a", true), ("b", true)])).unwrap_err();
        assert!(
            e.to_string()
                .contains("Multiple kernels found in /usr/lib/modules: a, b"),
            "{e}"
        );
        let e = select_kernel(&[], &[]).unwrap_err();
        assert!(e.to_string().contains("/usr/lib/modules is empty"), "{e}");
        let e = select_kernel(&[], &dirs(&[("a", false)])).unwrap_err();
        assert!(
            e.to_string().contains("Unable to find kernel (vmlinuz)"),
            "{e}"
        );
        let boot = vec!["vmlinuz-1".to_string(), "vmlinuz-2".to_string()];
        let e = select_kernel(&boot, &[]).unwrap_err();
        assert!(
            e.to_string().contains("Multiple kernels found in /boot"),
            "{e}"
        );
    }

    #[test]
    fn kernel_in_ostree_boot_strips_csum() {
        let csum = "a".repeat(64);
        let boot = vec![
            format!("vmlinuz-5.0-1-{csum}"),
            format!("initramfs-5.0-1.img-{csum}"),
            "grub2".to_string(),
        ];
        let loc = select_kernel(&boot, &dirs(&[("5.0-1", false)])).unwrap();
        assert_eq!(loc.kver, "5.0-1");
        assert_eq!(
            loc.vmlinuz,
            format!("usr/lib/ostree-boot/vmlinuz-5.0-1-{csum}")
        );
        assert_eq!(
            loc.ostree_boot_initramfs.as_deref(),
            Some(format!("usr/lib/ostree-boot/initramfs-5.0-1.img-{csum}").as_str())
        );
        assert_eq!(strip_bootcsum("6.1-x"), "6.1-x");
    }

    #[test]
    fn bootcsum_is_sha256_of_concatenation() {
        let mut v: &[u8] = b"a";
        let mut i: &[u8] = b"b";
        assert_eq!(
            bootcsum(&mut v, Some(&mut i)).unwrap(),
            "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603"
        );
        let mut v: &[u8] = b"ab";
        assert_eq!(
            bootcsum(&mut v, None).unwrap(),
            "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603"
        );
    }

    #[test]
    fn dracut_argument_list() {
        let a = dracut_args("/t", "6.1", None, true, Some("zstd -T0 -3"));
        assert_eq!(
            a,
            [
                "--reproducible",
                "--add",
                "ostree",
                "--tmpdir=/t",
                "-f",
                "/t/initramfs.img",
                "--no-hostonly",
                "--compress",
                "zstd -T0 -3",
                "--kver",
                "6.1"
            ]
        );
        let user = vec!["--xz".to_string(), "-I".to_string(), "x".to_string()];
        let a = dracut_args("/t", "6.1", Some(&user), false, Some("pigz -6 -n -T"));
        assert!(!a.contains(&"--compress".to_string()));
        assert!(!a.contains(&"--no-hostonly".to_string()));
        assert!(!a.contains(&"ostree".to_string()));
        assert!(a.contains(&"--xz".to_string()));
    }

    #[test]
    fn cpio_layout() {
        let c = urandom_cpio();
        assert_eq!(c.len() % 4, 0);
        assert!(c.starts_with(b"070701"));
        let s = String::from_utf8_lossy(&c);
        assert!(s.contains("dev/urandom\0"));
        assert!(s.contains("TRAILER!!!\0"));
        // The urandom header: mode 020666, rdev 1:9.
        let idx = s.find("dev/urandom").unwrap();
        let header = &s[idx - 110..idx];
        assert_eq!(&header[14..22], "000021b6");
        assert_eq!(&header[78..86], "00000001");
        assert_eq!(&header[86..94], "00000009");
    }

    #[test]
    fn hmac_relative() {
        assert_eq!(
            relativize_hmac("abc123  /boot/vmlinuz-6.1\n"),
            "abc123  vmlinuz\n"
        );
        assert_eq!(relativize_hmac("abc  vmlinuz\n"), "abc  vmlinuz\n");
    }

    #[test]
    fn compression_choice_is_detected() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(chooses_compression(&v(&["--no-hostonly", "--zstd"])));
        assert!(chooses_compression(&v(&["--compress=xz"])));
        assert!(chooses_compression(&v(&["--no-compress"])));
        assert!(!chooses_compression(&v(&[
            "--no-hostonly",
            "--kver",
            "6.1"
        ])));
    }

    #[test]
    fn compression_is_the_fastest_the_kernel_reads() {
        let zstd_kernel = "# comment\nCONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n";
        let gzip_kernel = "CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n";
        let pigz = Some(std::path::PathBuf::from("/usr/bin/pigz"));
        use InitramfsCompression::*;
        assert_eq!(
            choose_compression(true, true, Some(zstd_kernel), pigz.clone()),
            InTree("zstd -T0 -3")
        );
        assert_eq!(
            choose_compression(false, true, Some(zstd_kernel), pigz.clone()),
            Zstd
        );
        assert_eq!(
            choose_compression(true, true, Some(gzip_kernel), pigz.clone()),
            InTree("pigz -6 -n -T")
        );
        // No config shipped: zstd is not assumed.
        assert_eq!(
            choose_compression(true, false, None, pigz.clone()),
            HostPigz("/usr/bin/pigz".into())
        );
        assert_eq!(
            choose_compression(false, false, Some(gzip_kernel), None),
            DracutDefault
        );
        assert!(!kernel_reads_zstd("CONFIG_RD_ZSTD=m\n"));
    }

    /// With the host's pigz, dracut's early cpio stays uncompressed in
    /// front and the rest becomes one gzip stream.
    #[test]
    fn host_pigz_leaves_the_early_cpio_in_front() {
        let Some(pigz) = host_pigz() else {
            panic!("pigz is one of the test host's packages (ci/setup-host)");
        };
        let dir = tempfile::tempdir().unwrap();
        let mut early = Vec::new();
        cpio_entry(&mut early, 1, 0o100644, 1, (0, 0), "early_cpio");
        cpio_entry(&mut early, 0, 0, 1, (0, 0), "TRAILER!!!");
        early.resize(512, 0);
        let main: Vec<u8> = [
            urandom_cpio(),
            (0..200_000u32).map(|i| (i % 7) as u8).collect(),
        ]
        .concat();
        let img = dir.path().join("initramfs.img");
        for (image, kept) in [
            ([early.clone(), main.clone()].concat(), early.len()),
            (main.clone(), 0),
        ] {
            std::fs::write(&img, &image).unwrap();
            compress_with_host_pigz(&pigz, &img).unwrap();
            let packed = std::fs::read(&img).unwrap();
            assert_eq!(&packed[..kept], &image[..kept]);
            assert_eq!(
                &packed[kept..kept + 2],
                &[0x1f, 0x8b],
                "gzip after {kept} bytes"
            );
            let mut unpacked = Vec::new();
            flate2::read::GzDecoder::new(&packed[kept..])
                .read_to_end(&mut unpacked)
                .unwrap();
            assert!(unpacked == main, "gzip -d does not give the rest back");
        }
    }

    #[test]
    fn dracut_scratch_dir_has_a_fixed_name_and_goes_away() {
        let root = tempfile::tempdir().unwrap();
        let d = ScratchDir::create(root.path(), DRACUT_TMPDIR).unwrap();
        std::fs::write(root.path().join(DRACUT_TMPDIR).join("x"), "x").unwrap();
        // A second one (or one the tree ships) is an error, not a reuse.
        let e = ScratchDir::create(root.path(), DRACUT_TMPDIR)
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("/ostree-composer-dracut"),
            "{e:#}"
        );
        d.remove().unwrap();
        assert!(!root.path().join(DRACUT_TMPDIR).exists());
        // Dropped on a failure path: removed too.
        let d = ScratchDir::create(root.path(), DRACUT_TMPDIR).unwrap();
        drop(d);
        assert!(!root.path().join(DRACUT_TMPDIR).exists());
    }
}
