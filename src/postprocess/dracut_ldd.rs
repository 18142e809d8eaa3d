//! dracut's `ldd` without a shell.
//!
//! dracut and dracut-install ask `ldd` for the libraries of every program
//! and library they put into the initramfs (`DRACUT_LDD`, 111 times for
//! corpus-large). glibc's `ldd` is a bash script that runs the dynamic
//! loader three times; about 7 ms a call here, most of dracut's "Resolving
//! executable dependencies". The static program built from `dracut_ldd.c`
//! does what that script does for one file and no options (its output and
//! exit status are the script's, tested against the host's `ldd`), with two
//! loader runs, about 2 ms; anything else it hands to the tree's `ldd`.
//!
//! It is used only when the tree's `ldd` is that glibc script: the lines
//! whose logic the program repeats must all be there, and its `RTLDLIST`
//! (the loaders to try) is passed on. Otherwise, or with
//! `--no-dracut-fast-copy`, dracut runs the tree's `ldd` as it comes.
//!
//! Not for: other tools than dracut.

use std::io::Read;

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use sha2::{Digest, Sha256};

/// The program (built by `build.rs`).
const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dracut_ldd"));

/// Its file name in dracut's scratch directory.
const FILE_NAME: &str = "ldd";

/// Where `execlp("ldd")` finds the tree's ldd, in the order of the chroot's
/// `PATH`.
const TREE_LDD: [&str; 4] = ["usr/sbin/ldd", "usr/bin/ldd", "sbin/ldd", "bin/ldd"];

/// Larger than any ldd script (glibc's is 6 KiB).
const MAX_SCRIPT: u64 = 256 * 1024;

/// The lines of glibc's ldd whose logic `dracut_ldd.c` repeats: where they
/// are all present, the program and the script agree.
const SCRIPT_LINES: [&str; 12] = [
    "nonelf ()\n{\n  # Maybe extra code for non-ELF binaries.\n  return 1;\n}",
    r#"add_env="LD_TRACE_LOADED_OBJECTS=1 LD_WARN=$warn LD_BIND_NOW=$bind_now""#,
    r#"add_env="$add_env LD_LIBRARY_VERSION=\$verify_out""#,
    r#"add_env="$add_env LD_VERBOSE=$verbose""#,
    r#"output=$(eval $add_env '"$@"' 2>&1; rc=$?; printf 'x'; exit $rc)"#,
    r#"test $single_file = t || echo "${file}:""#,
    r#"if test ! -e "$file"; then"#,
    r#"elif test ! -f "$file"; then"#,
    r#"elif test -r "$file"; then"#,
    r#"verify_out=`${rtld} --verify "$file"`"#,
    "[02]) RTLD=${rtld}; break;;",
    r#"try_trace "$RTLD" "$file" || result=1"#,
];

/// The set-up for one dracut run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastLdd {
    /// Environment for dracut: `DRACUT_LDD` and what the program reads.
    pub env: Vec<(String, String)>,
    /// sha256 of the program and of the tree's ldd, for the run cache's
    /// inputs (dracut no longer opens the script itself).
    pub inputs_sha256: [u8; 32],
}

/// The loaders of a glibc `ldd` script, or `None` when `script` is not one
/// whose logic `dracut_ldd.c` repeats. Pure.
pub fn glibc_rtlds(script: &str) -> Option<Vec<String>> {
    if !script.starts_with("#!") || !SCRIPT_LINES.iter().all(|l| script.contains(l)) {
        return None;
    }
    let mut lists = script.lines().filter_map(|l| l.strip_prefix("RTLDLIST="));
    let list = lists.next()?;
    if lists.next().is_some() {
        return None;
    }
    let list = list.strip_prefix('"')?.strip_suffix('"')?;
    let rtlds: Vec<String> = list
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let plain = |p: &String| {
        p.starts_with('/') && !p.contains([':', '$', '`', '\\', '"', '\'', '*', '?', '['])
    };
    (!rtlds.is_empty() && rtlds.iter().all(plain)).then_some(rtlds)
}

/// Write the program into `scratch` (a directory of the tree at `root`,
/// given relative to it) and return how dracut runs it, or `None` (with the
/// reason printed) when the tree's ldd is not the script it stands in for.
pub fn set_up(root: &Dir, scratch: &str) -> Result<Option<FastLdd>> {
    let mut found = None;
    for path in TREE_LDD {
        match root.open_optional(path) {
            Ok(Some(f)) => {
                found = Some((path, f));
                break;
            }
            Ok(None) => {}
            // An absolute symlink, which only the chroot resolves: only the
            // speed-up is lost.
            Err(e) => {
                eprintln!("note: cannot open /{path} ({e}); dracut runs the tree's ldd");
                return Ok(None);
            }
        }
    }
    let Some((path, file)) = found else {
        return Ok(None);
    };
    let mut script = String::new();
    let read = (&file).take(MAX_SCRIPT).read_to_string(&mut script);
    let Some(rtlds) = read.ok().and_then(|_| glibc_rtlds(&script)) else {
        eprintln!(
            "note: /{path} is not the glibc ldd script ostree-composer knows; dracut runs it"
        );
        return Ok(None);
    };
    let program = format!("{scratch}/{FILE_NAME}");
    root.atomic_write_with_perms(&program, PROGRAM, Permissions::from_mode(0o755))
        .with_context(|| format!("Writing {program}"))?;
    let mut hasher = Sha256::new();
    hasher.update(PROGRAM);
    hasher.update(script.as_bytes());
    Ok(Some(FastLdd {
        env: vec![
            ("DRACUT_LDD".into(), format!("/{program}")),
            ("OSTREE_COMPOSER_LDD".into(), format!("/{path}")),
            ("OSTREE_COMPOSER_LDD_RTLDS".into(), rtlds.join(":")),
        ],
        inputs_sha256: hasher.finalize().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;
    use std::process::Command;

    const HOST_LDD: &str = "/usr/bin/ldd";

    fn host_script() -> String {
        std::fs::read_to_string(HOST_LDD).expect("the host has glibc's ldd")
    }

    #[test]
    fn the_loaders_come_from_a_glibc_script_only() {
        let script = host_script();
        let rtlds = glibc_rtlds(&script).expect("the host's ldd is glibc's");
        assert!(rtlds.iter().any(|r| Path::new(r).exists()), "{rtlds:?}");
        // Any line the program repeats changed: not the script it knows.
        for line in SCRIPT_LINES {
            let changed = script.replace(line, &line.replacen(' ', "  ", 1));
            assert_ne!(changed, script, "{line}");
            assert_eq!(glibc_rtlds(&changed), None, "{line}");
            assert_eq!(glibc_rtlds(&script.replace(line, "")), None, "{line}");
        }
        let list_line = script.lines().find(|l| l.starts_with("RTLDLIST=")).unwrap();
        for bad in [
            "RTLDLIST=\"\"",
            "RTLDLIST=\"lib/ld.so\"",
            "RTLDLIST=\"/lib/ld:x.so\"",
            "RTLDLIST=\"$(echo /lib/ld.so)\"",
            "RTLDLIST=/lib/ld.so",
        ] {
            assert_eq!(glibc_rtlds(&script.replace(list_line, bad)), None, "{bad}");
        }
        let twice = script.replace(list_line, &format!("{list_line}\n{list_line}"));
        assert_eq!(glibc_rtlds(&twice), None);
        assert_eq!(
            glibc_rtlds("#!/bin/sh\nexec /lib/ld-musl-x86_64.so.1 --list \"$@\"\n"),
            None
        );
    }

    /// Run `program args` with the program's environment; stdout and stderr
    /// together (as dracut-install reads them), load addresses (which
    /// differ between runs) blanked, and the exit status.
    fn run(program: &Path, args: &[&str], rtlds: &str) -> (String, i32) {
        let out = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 2>&1")
            .arg(program)
            .args(args)
            .env("LC_ALL", "C")
            .env("OSTREE_COMPOSER_LDD", HOST_LDD)
            .env("OSTREE_COMPOSER_LDD_RTLDS", rtlds)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut blanked = String::new();
        let mut rest = &text[..];
        while let Some(at) = rest.find("(0x") {
            blanked.push_str(&rest[..at]);
            let end = rest[at..].find(')').map_or(rest.len(), |e| at + e + 1);
            blanked.push_str("(ADDRESS)");
            rest = &rest[end..];
        }
        blanked.push_str(rest);
        (blanked, out.status.code().unwrap_or(-1))
    }

    /// The program and the host's glibc ldd give the same answer for every
    /// kind of file dracut asks about, and for what is handed over.
    #[test]
    fn the_program_answers_as_the_glibc_script_does() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join(FILE_NAME);
        std::fs::write(&program, PROGRAM).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let rtlds = glibc_rtlds(&host_script()).unwrap().join(":");
        let script = dir.path().join("script.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "plain text\n").unwrap();
        // A program one of whose libraries is gone: the loader says "not
        // found" and ldd still succeeds.
        let lib_source = dir.path().join("gone.c");
        std::fs::write(&lib_source, "int gone(void) { return 1; }\n").unwrap();
        let main_source = dir.path().join("main.c");
        std::fs::write(
            &main_source,
            "int gone(void);\nint main(void) { return gone(); }\n",
        )
        .unwrap();
        let lib = dir.path().join("libgone.so");
        let needs_gone = dir.path().join("needs-gone");
        let cc = |args: &[&std::ffi::OsStr]| {
            assert!(Command::new("cc").args(args).status().unwrap().success());
        };
        cc(&[
            "-shared".as_ref(),
            "-fPIC".as_ref(),
            "-o".as_ref(),
            lib.as_os_str(),
            lib_source.as_os_str(),
        ]);
        cc(&[
            "-o".as_ref(),
            needs_gone.as_os_str(),
            main_source.as_os_str(),
            "-L".as_ref(),
            dir.path().as_os_str(),
            "-lgone".as_ref(),
        ]);
        std::fs::remove_file(&lib).unwrap();
        let own = std::env::current_exe().unwrap();
        let cases: Vec<Vec<&str>> = vec![
            vec!["/usr/bin/bash"],
            vec![own.to_str().unwrap()],
            vec!["/lib/x86_64-linux-gnu/libc.so.6"],
            vec!["/lib64/ld-linux-x86-64.so.2"],
            vec!["/bin/busybox"], // static
            vec![needs_gone.to_str().unwrap()],
            vec![script.to_str().unwrap()],
            vec![text.to_str().unwrap()],
            vec![dir.path().to_str().unwrap()],
            vec!["/no/such/file"],
            vec!["bash"], // no slash: ./bash
            vec!["-v", "/usr/bin/true"],
            vec!["/usr/bin/true", "/usr/bin/bash"],
            vec!["--version"],
            vec![],
        ];
        for args in cases {
            let want = run(Path::new(HOST_LDD), &args, &rtlds);
            assert_eq!(run(&program, &args, &rtlds), want, "ldd {args:?}");
        }
        // The loaders tried in the script's order, the missing ones skipped.
        let want = run(Path::new(HOST_LDD), &["/usr/bin/bash"], &rtlds);
        let padded = format!("/no/such/ld.so:{rtlds}");
        assert_eq!(run(&program, &["/usr/bin/bash"], &padded), want);
        let (none, status) = run(&program, &["/usr/bin/bash"], "/no/such/ld.so");
        assert_eq!((none.as_str(), status), ("\tnot a dynamic executable\n", 1));
    }

    /// A tree whose ldd is the given script.
    fn tree_with(ldd: Option<&str>) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        std::fs::create_dir(t.path().join("scratch")).unwrap();
        if let Some(script) = ldd {
            std::fs::write(t.path().join("usr/bin/ldd"), script).unwrap();
        }
        t
    }

    fn set_up_in(t: &tempfile::TempDir) -> Option<FastLdd> {
        let root =
            Dir::open_ambient_dir(t.path(), cap_std_ext::cap_std::ambient_authority()).unwrap();
        set_up(&root, "scratch").unwrap()
    }

    #[test]
    fn set_up_writes_the_program_only_for_a_glibc_ldd() {
        let script = host_script();
        let glibc = tree_with(Some(&script));
        let f = set_up_in(&glibc).expect("stands in for glibc's ldd");
        let rtlds = glibc_rtlds(&script).unwrap().join(":");
        assert_eq!(
            f.env,
            [
                ("DRACUT_LDD".to_string(), "/scratch/ldd".to_string()),
                (
                    "OSTREE_COMPOSER_LDD".to_string(),
                    "/usr/bin/ldd".to_string()
                ),
                ("OSTREE_COMPOSER_LDD_RTLDS".to_string(), rtlds),
            ]
        );
        let written = glibc.path().join("scratch").join(FILE_NAME);
        assert_eq!(std::fs::read(&written).unwrap(), PROGRAM);
        assert_eq!(
            std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // Another ldd script changes the inputs the run cache keys on.
        let other = tree_with(Some(&script.replace("Copyright", "(C)")));
        assert_ne!(set_up_in(&other).unwrap().inputs_sha256, f.inputs_sha256);

        let musl = tree_with(Some(
            "#!/bin/sh\nexec /lib/ld-musl-x86_64.so.1 --list \"$@\"\n",
        ));
        let none = tree_with(None);
        for t in [musl, none] {
            assert_eq!(set_up_in(&t), None);
            assert!(!t.path().join("scratch").join(FILE_NAME).exists());
        }
    }
}
