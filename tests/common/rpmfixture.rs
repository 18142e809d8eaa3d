//! Build real RPM packages and rpm-md repositories at test time.
//!
//! A [`Pkg`] describes one package (files, dirs, symlinks, dependencies,
//! scriptlets); [`build_repo`] writes a spec per package, runs `rpmbuild -bb`
//! and `createrepo_c`, and returns the repository directory. Tests then point a
//! `.repo` file at it with [`write_repo_file`].
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One entry of a package payload.
#[derive(Clone, Debug)]
pub enum Entry {
    File {
        path: String,
        content: Vec<u8>,
        mode: u32,
        user: String,
        group: String,
        config: bool,
        doc: bool,
    },
    Dir {
        path: String,
        mode: u32,
        user: String,
        group: String,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// A second name of the file `target` (an earlier entry of the package).
    Hardlink {
        path: String,
        target: String,
    },
    /// A `%ghost` file: owned by the package, never installed.
    Ghost {
        path: String,
    },
    /// A root-owned 0644 file marked `%lang(lang)`.
    Lang {
        path: String,
        content: String,
        lang: String,
    },
    /// A root-owned 0755 executable with `%caps(caps)` (libcap's text
    /// form, e.g. `cap_net_raw=p`).
    Caps {
        path: String,
        content: String,
        caps: String,
    },
}

impl Entry {
    /// A root-owned 0644 file.
    pub fn file(path: &str, content: &str) -> Entry {
        Entry::File {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            mode: 0o644,
            user: "root".into(),
            group: "root".into(),
            config: false,
            doc: false,
        }
    }
    /// A root-owned 0755 executable.
    pub fn exe(path: &str, content: &str) -> Entry {
        Entry::File {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            mode: 0o755,
            user: "root".into(),
            group: "root".into(),
            config: false,
            doc: false,
        }
    }
    /// A `%config(noreplace)` file.
    pub fn config(path: &str, content: &str) -> Entry {
        Entry::File {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            mode: 0o644,
            user: "root".into(),
            group: "root".into(),
            config: true,
            doc: false,
        }
    }
    /// A `%doc` file.
    pub fn doc(path: &str, content: &str) -> Entry {
        Entry::File {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            mode: 0o644,
            user: "root".into(),
            group: "root".into(),
            config: false,
            doc: true,
        }
    }
    pub fn dir(path: &str) -> Entry {
        Entry::Dir {
            path: path.into(),
            mode: 0o755,
            user: "root".into(),
            group: "root".into(),
        }
    }
    /// A directory with an owner and mode (e.g. `/var/lib/foo` owned by a system user).
    pub fn owned_dir(path: &str, mode: u32, user: &str, group: &str) -> Entry {
        Entry::Dir {
            path: path.into(),
            mode,
            user: user.into(),
            group: group.into(),
        }
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }
    fn path(&self) -> &str {
        match self {
            Entry::File { path, .. }
            | Entry::Dir { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::Hardlink { path, .. }
            | Entry::Ghost { path }
            | Entry::Caps { path, .. }
            | Entry::Lang { path, .. } => path,
        }
    }
}

/// One package to build.
#[derive(Clone, Debug)]
pub struct Pkg {
    pub name: String,
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
    /// `noarch` or `x86_64`.
    pub arch: String,
    pub requires: Vec<String>,
    pub recommends: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub entries: Vec<Entry>,
    /// Scriptlets by name: `pre`, `post`, `posttrans`, ... (shell bodies).
    pub scripts: Vec<(String, String)>,
    pub summary: String,
}

impl Pkg {
    pub fn new(name: &str, version: &str) -> Pkg {
        Pkg {
            name: name.into(),
            epoch: None,
            version: version.into(),
            release: "1".into(),
            arch: "noarch".into(),
            requires: vec![],
            recommends: vec![],
            provides: vec![],
            conflicts: vec![],
            entries: vec![],
            scripts: vec![],
            summary: format!("Test package {name}"),
        }
    }
    pub fn release(mut self, r: &str) -> Self {
        self.release = r.into();
        self
    }
    pub fn arch(mut self, a: &str) -> Self {
        self.arch = a.into();
        self
    }
    pub fn requires(mut self, r: &str) -> Self {
        self.requires.push(r.into());
        self
    }
    pub fn recommends(mut self, r: &str) -> Self {
        self.recommends.push(r.into());
        self
    }
    pub fn provides(mut self, p: &str) -> Self {
        self.provides.push(p.into());
        self
    }
    pub fn entry(mut self, e: Entry) -> Self {
        self.entries.push(e);
        self
    }
    pub fn script(mut self, kind: &str, body: &str) -> Self {
        self.scripts.push((kind.into(), body.into()));
        self
    }
    /// `name-version-release.arch.rpm`
    pub fn filename(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }

    fn spec(&self, payload_dir: &Path) -> String {
        let mut s = String::new();
        writeln!(s, "Name: {}", self.name).unwrap();
        if let Some(e) = self.epoch {
            writeln!(s, "Epoch: {e}").unwrap();
        }
        writeln!(s, "Version: {}", self.version).unwrap();
        writeln!(s, "Release: {}", self.release).unwrap();
        writeln!(s, "Summary: {}", self.summary).unwrap();
        writeln!(s, "License: MIT").unwrap();
        writeln!(s, "BuildArch: {}", self.arch).unwrap();
        writeln!(s, "AutoReqProv: no").unwrap();
        for r in &self.requires {
            writeln!(s, "Requires: {r}").unwrap();
        }
        for r in &self.recommends {
            writeln!(s, "Recommends: {r}").unwrap();
        }
        for p in &self.provides {
            writeln!(s, "Provides: {p}").unwrap();
        }
        for c in &self.conflicts {
            writeln!(s, "Conflicts: {c}").unwrap();
        }
        writeln!(s, "\n%description\n{}\n", self.summary).unwrap();
        writeln!(s, "%install\nmkdir -p %{{buildroot}}").unwrap();
        writeln!(s, "cp -a {}/. %{{buildroot}}/", payload_dir.display()).unwrap();
        for (kind, body) in &self.scripts {
            writeln!(s, "\n%{kind}\n{body}").unwrap();
        }
        writeln!(s, "\n%files").unwrap();
        for e in &self.entries {
            let p = quote_path(e.path());
            match e {
                Entry::File {
                    mode,
                    user,
                    group,
                    config,
                    doc,
                    ..
                } => {
                    let mut prefix = format!("%attr({mode:o},{user},{group}) ");
                    if *config {
                        prefix.push_str("%config(noreplace) ");
                    }
                    if *doc {
                        prefix.push_str("%doc ");
                    }
                    writeln!(s, "{prefix}{p}").unwrap();
                }
                Entry::Dir {
                    mode, user, group, ..
                } => writeln!(s, "%dir %attr({mode:o},{user},{group}) {p}").unwrap(),
                Entry::Symlink { .. } | Entry::Hardlink { .. } => writeln!(s, "{p}").unwrap(),
                Entry::Ghost { .. } => writeln!(s, "%ghost {p}").unwrap(),
                Entry::Lang { lang, .. } => writeln!(s, "%lang({lang}) {p}").unwrap(),
                Entry::Caps { caps, .. } => {
                    writeln!(s, "%attr(755,root,root) %caps({caps}) {p}").unwrap()
                }
            }
        }
        s
    }

    fn write_payload(&self, dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        for e in &self.entries {
            let rel = e.path().trim_start_matches('/');
            let dest = dir.join(rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            match e {
                Entry::File { content, mode, .. } => {
                    std::fs::write(&dest, content).unwrap();
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode))
                        .unwrap();
                }
                Entry::Dir { .. } => std::fs::create_dir_all(&dest).unwrap(),
                Entry::Symlink { target, .. } => std::os::unix::fs::symlink(target, &dest).unwrap(),
                Entry::Hardlink { target, .. } => {
                    std::fs::hard_link(dir.join(target.trim_start_matches('/')), &dest).unwrap()
                }
                Entry::Ghost { .. } => std::fs::write(&dest, b"").unwrap(),
                Entry::Lang { content, .. } => std::fs::write(&dest, content).unwrap(),
                Entry::Caps { content, .. } => {
                    std::fs::write(&dest, content).unwrap();
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                        .unwrap();
                }
            }
        }
    }
}

fn quote_path(p: &str) -> String {
    if p.contains(' ') {
        format!("\"{p}\"")
    } else {
        p.to_string()
    }
}

fn run(cmd: &mut Command) {
    super::run_ok(cmd);
}

/// Build one package into `out_dir` and return the path of the `.rpm`.
pub fn build_rpm(pkg: &Pkg, out_dir: &Path) -> PathBuf {
    let work = tempfile::tempdir().unwrap();
    let payload = work.path().join("payload");
    std::fs::create_dir_all(&payload).unwrap();
    pkg.write_payload(&payload);
    let spec = work.path().join(format!("{}.spec", pkg.name));
    std::fs::write(&spec, pkg.spec(&payload)).unwrap();
    let top = work.path().join("top");
    std::fs::create_dir_all(out_dir).unwrap();
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--nodeps")
        .arg("--quiet")
        .arg(format!("--define=_topdir {}", top.display()))
        .arg(format!("--define=_rpmdir {}", out_dir.display()))
        .arg("--define=_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm")
        .arg("--define=__os_install_post %{nil}")
        .arg("--define=debug_package %{nil}")
        .arg("--define=_build_id_links none")
        .arg("--define=_binary_payload w3.zstdio")
        .arg(&spec)
        .env("HOME", work.path()));
    out_dir.join(pkg.filename())
}

/// The offset of an RPM's payload: the lead, the signature header (padded
/// to 8 bytes) and the main header come first.
fn payload_offset(rpm: &[u8]) -> usize {
    let mut off = 96;
    for header in 0..2 {
        assert_eq!(&rpm[off..off + 3], b"\x8e\xad\xe8", "header {header} magic");
        let word = |at: usize| u32::from_be_bytes(rpm[at..at + 4].try_into().unwrap()) as usize;
        off += 16 + 16 * word(off + 8) + word(off + 12);
        if header == 0 {
            off = off.div_ceil(8) * 8;
        }
    }
    off
}

/// `rpm` with its payload replaced by `other`'s: a package whose payload
/// decompresses fine but is not the one its header describes.
pub fn splice_payload(rpm: &[u8], other: &[u8]) -> Vec<u8> {
    let mut spliced = rpm[..payload_offset(rpm)].to_vec();
    spliced.extend_from_slice(&other[payload_offset(other)..]);
    spliced
}

/// Build every package into `dir/Packages` and run `createrepo_c` on `dir`.
pub fn build_repo(dir: &Path, pkgs: &[Pkg]) -> PathBuf {
    let packages = dir.join("Packages");
    for p in pkgs {
        build_rpm(p, &packages);
    }
    refresh_repo(dir);
    dir.to_path_buf()
}

/// Re-run `createrepo_c` (after adding or removing RPMs).
pub fn refresh_repo(dir: &Path) {
    std::fs::create_dir_all(dir.join("Packages")).unwrap();
    run(Command::new("createrepo_c")
        .arg("--quiet")
        .arg("--no-database")
        .arg(dir));
}

/// Write `<manifest_dir>/<id>.repo` pointing at a local repository.
pub fn write_repo_file(manifest_dir: &Path, id: &str, repo_dir: &Path, gpgcheck: bool) -> PathBuf {
    let path = manifest_dir.join(format!("{id}.repo"));
    std::fs::write(
        &path,
        format!(
            "[{id}]\nname={id}\nbaseurl=file://{}\nenabled=1\ngpgcheck={}\n",
            repo_dir.display(),
            u8::from(gpgcheck)
        ),
    )
    .unwrap();
    path
}

/// A minimal `filesystem` package like Fedora's: the skeleton and /bin -> usr/bin links.
pub fn filesystem_pkg() -> Pkg {
    let mut p = Pkg::new("filesystem", "3.18").arch("x86_64");
    for d in [
        "/etc",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/usr/lib64",
        "/usr/libexec",
        "/usr/share",
        "/usr/share/doc",
        "/usr/lib/modules",
        "/usr/lib/systemd",
        "/usr/lib/systemd/system",
        "/usr/lib/tmpfiles.d",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/cache",
        "/var/spool",
        "/run",
        "/boot",
        "/home",
        "/root",
        "/opt",
        "/srv",
        "/mnt",
        "/media",
        "/tmp",
        "/dev",
        "/proc",
        "/sys",
    ] {
        p = p.entry(Entry::dir(d));
    }
    p.entry(Entry::symlink("/bin", "usr/bin"))
        .entry(Entry::symlink("/sbin", "usr/sbin"))
        .entry(Entry::symlink("/lib", "usr/lib"))
        .entry(Entry::symlink("/lib64", "usr/lib64"))
        .entry(Entry::symlink("/var/run", "../run"))
}

/// A `setup` package owning passwd/group with a system user and group `demo` (uid/gid 900).
pub fn setup_pkg() -> Pkg {
    Pkg::new("setup", "2.14")
        .requires("filesystem")
        .entry(Entry::config(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nbin:x:1:1:bin:/bin:/sbin/nologin\ndemo:x:900:900:demo:/:/sbin/nologin\n",
        ))
        .entry(Entry::config(
            "/etc/group",
            "root:x:0:\nbin:x:1:\nwheel:x:10:\ndemo:x:900:\n",
        ))
        .entry(Entry::File {
            path: "/etc/shadow".into(),
            content: b"root:*::0:99999:7:::\nbin:*::0:99999:7:::\ndemo:*::0:99999:7:::\n".to_vec(),
            mode: 0o000,
            user: "root".into(),
            group: "root".into(),
            config: true,
            doc: false,
        })
        .entry(Entry::File {
            path: "/etc/gshadow".into(),
            content: b"root:::\nbin:::\nwheel:::\ndemo:::\n".to_vec(),
            mode: 0o000,
            user: "root".into(),
            group: "root".into(),
            config: true,
            doc: false,
        })
}

/// True when the host has the tools these fixtures need.
pub fn have_rpm_tools() -> bool {
    ["rpmbuild", "createrepo_c"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// A package shipping the host's static busybox as `/usr/bin/busybox` with
/// applet links, so scriptlets and postprocess scripts have a `/bin/sh`.
pub fn busybox_pkg() -> Pkg {
    let busybox =
        std::fs::read("/bin/busybox").expect("busybox-static is installed (/bin/busybox)");
    let mut p = Pkg::new("busybox", "1.35.0")
        .arch("x86_64")
        .requires("filesystem");
    p.provides.push("/bin/sh".into());
    p.provides.push("/usr/bin/sh".into());
    p.entries.push(Entry::File {
        path: "/usr/bin/busybox".into(),
        content: busybox,
        mode: 0o755,
        user: "root".into(),
        group: "root".into(),
        config: false,
        doc: false,
    });
    for applet in [
        "sh", "ls", "cat", "echo", "mkdir", "rm", "touch", "test", "chmod", "chown", "ln", "cp",
        "mv", "sed", "grep", "id", "true", "false", "env", "printf", "stat", "readlink",
    ] {
        p.entries
            .push(Entry::symlink(&format!("/usr/bin/{applet}"), "busybox"));
    }
    p
}

/// A kernel stand-in: `/usr/lib/modules/KVER/{vmlinuz,initramfs.img}` and a module dir.
pub fn kernel_pkg(kver: &str) -> Pkg {
    let mut p = Pkg::new("kernel-core", "6.1.0")
        .arch("x86_64")
        .requires("filesystem");
    let vmlinuz: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let initramfs: Vec<u8> = (0..2048u32).map(|i| (i * 13 % 241) as u8).collect();
    for (name, content) in [("vmlinuz", vmlinuz), ("initramfs.img", initramfs)] {
        p.entries.push(Entry::File {
            path: format!("/usr/lib/modules/{kver}/{name}"),
            content,
            mode: 0o644,
            user: "root".into(),
            group: "root".into(),
            config: false,
            doc: false,
        });
    }
    p.entries
        .push(Entry::dir(&format!("/usr/lib/modules/{kver}")));
    p.entries
        .push(Entry::dir(&format!("/usr/lib/modules/{kver}/kernel")));
    p
}
