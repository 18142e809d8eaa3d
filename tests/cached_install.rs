//! The cached installer (root assembled from the package cache, rpmdb by
//! `rpm --justdb`, scriptlets run by us) against rpm's own install: the same
//! fixture composed both ways must give the same tree, file for file
//! (checksums, modes, owners), on a first run and after a package changes.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::compose_fixture::*;
use common::composer_bin;
use common::rpmfixture::*;

/// Packages that exercise what the cached installer must reproduce: a user
/// created by `%pre` (writing into a packaged /etc/passwd in place) owning a
/// file, an unknown owner, setuid, a hardlink pair, a `%ghost`, a doc left
/// out by `documentation: false`, a file shared by two packages, a `%post`
/// appending to a packaged file, a `%posttrans`, and a `%lang(de)` file
/// (with the directory it leaves empty) that `install-langs` leaves out.
fn tricky(version: &str) -> Vec<Pkg> {
    let file = |path: &str, content: &str, mode: u32, user: &str| Entry::File {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        mode,
        user: user.into(),
        group: user.into(),
        config: false,
        doc: false,
    };
    vec![
        Pkg::new("tricky", version)
            .arch("x86_64")
            .requires("setup")
            .requires("busybox")
            .script(
                "pre",
                "echo 'svc:x:901:901:svc:/:/sbin/nologin' >> /etc/passwd\necho 'svc:x:901:' >> /etc/group",
            )
            .script(
                "post",
                "echo \"appended $1\" >> /usr/share/tricky/changed-by-post",
            )
            .script(
                "posttrans",
                "echo posttrans > /usr/share/tricky/posttrans-ran",
            )
            .entry(Entry::owned_dir("/usr/share/tricky", 0o751, "root", "root"))
            .entry(file("/usr/share/tricky/owned", "svc data\n", 0o640, "svc"))
            .entry(file("/usr/share/tricky/nobody", "x\n", 0o644, "nosuchuser"))
            .entry(file("/usr/bin/tricky-suid", &format!("#!/bin/sh\necho {version}\n"), 0o4755, "root"))
            .entry(Entry::file("/usr/share/tricky/a", "linked\n"))
            .entry(Entry::Hardlink {
                path: "/usr/share/tricky/b".into(),
                target: "/usr/share/tricky/a".into(),
            })
            .entry(Entry::Ghost {
                path: "/usr/share/tricky/ghost.log".into(),
            })
            .entry(Entry::doc("/usr/share/doc/tricky/README", "docs\n"))
            .entry(Entry::file("/usr/share/tricky/changed-by-post", "original\n"))
            .entry(Entry::file("/usr/share/licenses/common/LICENSE", "shared\n"))
            .entry(Entry::dir("/usr/share/locale/de"))
            .entry(Entry::Lang {
                path: "/usr/share/locale/de/tricky.mo".into(),
                content: "de\n".into(),
                lang: "de".into(),
            })
            .entry(Entry::Lang {
                path: "/usr/share/locale/en/tricky.mo".into(),
                content: "en\n".into(),
                lang: "en".into(),
            }),
        // An interpreter without a body: rpm runs it alone, without arguments.
        Pkg::new("progpost", "1.0")
            .requires("busybox")
            .script("post -p /usr/libexec/progpost", "")
            .entry(Entry::exe(
                "/usr/libexec/progpost",
                "#!/bin/sh\necho \"ran with $# arguments\" > /usr/share/progpost-ran\n",
            )),
        Pkg::new("tricky-extra", "1.0")
            .requires("tricky")
            .entry(Entry::file("/usr/share/licenses/common/LICENSE", "shared\n"))
            .entry(Entry::symlink("/usr/share/tricky-extra", "tricky")),
    ]
}

fn manifest() -> String {
    MANIFEST.replace(
        "  - kernel-core\n",
        "  - kernel-core\n  - tricky-extra\n  - progpost\ninstall-langs: [en_US]\n",
    )
}

/// `compose tree` of `f`'s manifest into `repo` with cache `cache`.
fn compose_into(f: &Fixture, repo: &Path, cache: &Path, extra: &[&str]) -> Output {
    Command::new(composer_bin())
        .args(["compose", "tree", "--unified-core"])
        .arg(format!("--repo={}", repo.display()))
        .arg(format!("--cachedir={}", cache.display()))
        .args(extra)
        .arg(&f.manifest)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

/// Every path of the ref with its mode, owner, size and checksum.
fn tree_listing(repo: &Path) -> String {
    ostree(repo, &["ls", "-R", "-C", REF])
}

fn assert_same_trees(rpm_repo: &Path, cached_repo: &Path) {
    let a = tree_listing(rpm_repo);
    let b = tree_listing(cached_repo);
    if a != b {
        let diff: Vec<String> = a
            .lines()
            .filter(|l| !b.contains(*l))
            .map(|l| format!("- {l}"))
            .chain(
                b.lines()
                    .filter(|l| !a.contains(*l))
                    .map(|l| format!("+ {l}")),
            )
            .collect();
        panic!("the trees differ (- rpm, + cached):\n{}", diff.join("\n"));
    }
}

/// Compose `f` with rpm (`--no-package-cache`, into `f.repo`) and with the
/// package cache (into another repo): a first time (the cache is filled),
/// then again (the root assembled from it), comparing the trees each time.
/// Returns the second repo.
fn compose_both_ways(f: &Fixture) -> PathBuf {
    let cached_repo = f.dir.join("../repo-cached");
    init_repo(&cached_repo, "bare-user");
    let rpm_cache = f.dir.join("../cache-rpm");
    for extra in [&[][..], &["--force-nocache"]] {
        let rpm_args = [extra, &["--no-package-cache"]].concat();
        let out = compose_into(f, &f.repo, &rpm_cache, &rpm_args);
        assert!(out.status.success(), "{}", text(&out));
        let out = compose_into(f, &cached_repo, &f.cache, extra);
        let log = text(&out);
        assert!(out.status.success(), "{log}");
        assert!(!log.contains("installing with rpm, not from"), "{log}");
        assert_same_trees(&f.repo, &cached_repo);
    }
    cached_repo
}

#[test]
fn cached_install_gives_rpms_tree_first_and_after_a_change() {
    let f = fixture_with(tricky("1.0"), |_| false, &manifest());
    let cached_repo = f.dir.join("../repo-cached");
    init_repo(&cached_repo, "bare-user");
    let rpm_cache = f.dir.join("../cache-rpm");

    let out = compose_into(&f, &f.repo, &rpm_cache, &["--no-package-cache"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("Package cache:"), "{}", text(&out));
    // A first compose into a bare-user repository imports every package,
    // assembles the root from the cache and copies the cache's files into
    // the repository before the commit.
    let out = compose_into(&f, &cached_repo, &f.cache, &[]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("Package cache: 10 of 10 packages imported"),
        "{log}"
    );
    assert!(log.contains("Root assembled"), "{log}");
    assert!(log.contains("Staged ahead of the commit: "), "{log}");
    // %pre appended to /etc/passwd through a cache link, %post to a packaged
    // file: those two entries are dropped again.
    assert!(log.contains("dropping the entry"), "{log}");
    assert_same_trees(&f.repo, &cached_repo);
    // The same inputs again (the previous commit's passwd and group are
    // injected before the install now): rpm, and assembled from the cache
    // after importing the two dropped entries again.
    let out = compose_into(
        &f,
        &f.repo,
        &rpm_cache,
        &["--no-package-cache", "--force-nocache"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = compose_into(&f, &cached_repo, &f.cache, &["--force-nocache"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("Package cache: 2 of 10 packages imported"),
        "{log}"
    );
    assert!(log.contains("Root assembled"), "{log}");
    assert!(log.contains("dropping the entry"), "{log}");
    assert!(
        log.contains("user nosuchuser does not exist - using root"),
        "{log}"
    );
    assert_same_trees(&f.repo, &cached_repo);

    // What the scriptlets did is in the tree, and only once.
    assert_eq!(
        ostree(
            &cached_repo,
            &["cat", REF, "/usr/share/tricky/changed-by-post"]
        ),
        "original\nappended 1\n"
    );
    let ls = tree_listing(&cached_repo);
    let line = |p: &str| {
        ls.lines()
            .find(|l| l.ends_with(&format!(" {p}")))
            .unwrap_or_else(|| panic!("{p} missing:\n{ls}"))
            .to_string()
    };
    assert!(
        line("/usr/share/tricky/owned").starts_with("-00640 901 901 "),
        "{ls}"
    );
    assert!(
        line("/usr/bin/tricky-suid").starts_with("-04755 0 0 "),
        "{ls}"
    );
    assert!(line("/usr/share/tricky").starts_with("d00751 0 0 "), "{ls}");
    assert!(
        !ls.contains("ghost.log") && !ls.contains("/usr/share/doc/tricky"),
        "{ls}"
    );
    assert!(!ls.contains("/usr/share/locale/de"), "{ls}");
    assert_eq!(
        ostree(&cached_repo, &["cat", REF, "/usr/share/progpost-ran"]),
        "ran with 0 arguments\n"
    );
    assert!(ls.contains("/usr/share/locale/en/tricky.mo"), "{ls}");

    // The entries a scriptlet wrote into were dropped: the cache holds the
    // packages' own bytes for the next run.
    let cached_changed = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {}/pkgcache/v1/*/tree/usr/share/tricky/changed-by-post 2>/dev/null; true",
            f.cache.display()
        ))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&cached_changed.stdout).contains("appended"));

    // A new version of one package: both ways again, from the kept caches.
    let rpms = f.dir.join("../rpms");
    for p in tricky("2.0").into_iter().filter(|p| p.name == "tricky") {
        build_rpm(&p, &rpms.join("Packages"));
    }
    refresh_repo(&rpms);
    let out = compose_into(&f, &f.repo, &rpm_cache, &["--no-package-cache"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = compose_into(&f, &cached_repo, &f.cache, &[]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    // Only tricky 2.0: setup's entry was not written into (its /etc/passwd
    // went beside the injected one as .rpmnew), tricky 1.0's is gone.
    assert!(
        log.contains("Package cache: 1 of 10 packages imported"),
        "{log}"
    );
    assert_same_trees(&f.repo, &cached_repo);
    assert_eq!(
        ostree(&cached_repo, &["cat", REF, "/usr/bin/tricky-suid"]),
        "#!/bin/sh\necho 2.0\n"
    );
    // Every object the commits point to is intact.
    assert!(ostree_ok(&cached_repo, &["fsck"]), "fsck failed");
}

/// A tree without a kernel step: rpm installs a first compose (its files are
/// then renamed into the repository) and the package cache is filled beside
/// rpm's transaction, on the core rpm leaves idle; a forced rerun assembles
/// the same tree from that cache.
#[test]
fn a_container_tree_fills_the_cache_beside_rpms_transaction() {
    let f = fixture_with(
        tricky("1.0"),
        |_| false,
        &format!("{}container: true\n", manifest()),
    );
    let cached_repo = f.dir.join("../repo-cached");
    init_repo(&cached_repo, "bare-user");
    let rpm_cache = f.dir.join("../cache-rpm");
    for (extra, expected) in [
        (
            &[][..],
            "Package cache: 10 of 10 packages missing; importing them beside rpm's transaction",
        ),
        (&["--force-nocache"][..], "Root assembled"),
    ] {
        let rpm_args = [extra, &["--no-package-cache"]].concat();
        let out = compose_into(&f, &f.repo, &rpm_cache, &rpm_args);
        assert!(out.status.success(), "{}", text(&out));
        let out = compose_into(&f, &cached_repo, &f.cache, extra);
        let log = text(&out);
        assert!(out.status.success(), "{log}");
        assert!(log.contains(expected), "{log}");
        assert_same_trees(&f.repo, &cached_repo);
    }
    assert!(ostree_ok(&cached_repo, &["fsck"]), "fsck failed");
}

#[test]
fn lua_scriptlets_and_pretrans_run_as_rpm_runs_them() {
    let lua = Pkg::new("luapkg", "1.0")
        .requires("filesystem")
        // Before any file is in place: only the root itself exists.
        .script(
            "pretrans -p <lua>",
            "posix.mkdir('/etc')\nio.open('/etc/lua-pretrans', 'w'):write('before\\n')\n\
             kept = io.open('/etc/lua-global', 'w')\nkept:write('global\\n')",
        )
        .script(
            "post -p <lua>",
            "print('hello from lua')\n\
             local f = io.open('/usr/share/lua-ran', 'w')\n\
             f:write(arg[1] .. ' ' .. arg[2] .. ' ' .. type(arg[2]) .. ' ' .. posix.getcwd() .. '\\n')\n\
             f:close()",
        )
        .entry(Entry::file("/usr/share/luapkg/data", "d\n"));
    let f = fixture_with(
        vec![lua],
        |_| false,
        &MANIFEST.replace("  - kernel-core\n", "  - kernel-core\n  - luapkg\n"),
    );
    let cached_repo = compose_both_ways(&f);
    assert_eq!(
        ostree(&cached_repo, &["cat", REF, "/usr/share/lua-ran"]),
        "<lua> 1 number /\n"
    );
    assert_eq!(
        ostree(&cached_repo, &["cat", REF, "/usr/etc/lua-pretrans"]),
        "before\n"
    );
    // A file the script keeps open in a global is written out too.
    assert_eq!(
        ostree(&cached_repo, &["cat", REF, "/usr/etc/lua-global"]),
        "global\n"
    );
}

#[test]
fn trans_file_triggers_run_as_rpm_runs_them() {
    let watcher = Pkg::new("ftrig", "1.0")
        .requires("busybox")
        .script(
            "transfiletriggerin -- /usr/share/watched",
            "echo \"trigger: $# $1 $2\" >> /usr/share/ftrig-log\ncat >> /usr/share/ftrig-log",
        )
        .script("posttrans", "echo posttrans >> /usr/share/ftrig-log")
        .entry(Entry::file("/usr/share/watched/own", "own\n"));
    let data = Pkg::new("ftrig-data", "1.0")
        .entry(Entry::file("/usr/share/watched/a", "a\n"))
        .entry(Entry::doc("/usr/share/watched/doc/README", "doc\n"))
        .entry(Entry::Ghost {
            path: "/usr/share/watched/ghost".into(),
        })
        .entry(Entry::file("/usr/share/unwatched", "u\n"));
    let f = fixture_with(
        vec![watcher, data],
        |_| false,
        &MANIFEST.replace(
            "  - kernel-core\n",
            "  - kernel-core\n  - ftrig\n  - ftrig-data\n",
        ),
    );
    let cached_repo = compose_both_ways(&f);
    // After %posttrans, one argument (0), the installed files under the
    // prefix on stdin: %ghost included, the %doc nodocs left out not.
    assert_eq!(
        ostree(&cached_repo, &["cat", REF, "/usr/share/ftrig-log"]),
        "posttrans\ntrigger: 1 0 \n/usr/share/watched/own\n/usr/share/watched/a\n/usr/share/watched/ghost\n"
    );
}

#[test]
fn file_triggers_run_as_rpm_runs_them() {
    // A watcher with a low and a high priority trigger and a %post, a
    // package installed after it that sets them off, and one before it.
    let watcher = Pkg::new("fwatch", "1.0")
        .requires("busybox")
        .requires("fbefore")
        .script(
            "filetriggerin -- /usr/share/fw",
            "echo \"low: $# $1\" >> /usr/share/fw-log\ncat >> /usr/share/fw-log",
        )
        .script(
            "filetriggerin -P 20000 -- /usr/share/fw/high",
            "echo high >> /usr/share/fw-log\ncat >> /usr/share/fw-log",
        )
        .script(
            "filetriggerin -P 100 -- /usr/share/fw/late",
            "echo late >> /usr/share/fw-log\ncat >> /usr/share/fw-log",
        )
        .script("post", "echo post fwatch >> /usr/share/fw-log")
        .entry(Entry::file("/usr/share/fw/own", "own\n"));
    let before = Pkg::new("fbefore", "1.0").entry(Entry::file("/usr/share/fw/before", "b\n"));
    let after = Pkg::new("fafter", "1.0")
        .requires("fwatch")
        .script("post", "echo post fafter >> /usr/share/fw-log")
        .entry(Entry::file("/usr/share/fw/after", "a\n"))
        .entry(Entry::file("/usr/share/fw/high/h", "h\n"))
        .entry(Entry::file("/usr/share/fw/late/l", "l\n"));
    let f = fixture_with(
        vec![watcher, before, after],
        |_| false,
        &MANIFEST.replace("  - kernel-core\n", "  - kernel-core\n  - fafter\n"),
    );
    let cached_repo = compose_both_ways(&f);
    // Default and high priority before each %post, low priority after it;
    // the watcher's own files once, then the earlier package's.
    assert_eq!(
        ostree(&cached_repo, &["cat", REF, "/usr/share/fw-log"]),
        "low: 1 0\n/usr/share/fw/own\nlow: 1 0\n/usr/share/fw/before\npost fwatch\n\
         low: 1 0\n/usr/share/fw/after\n/usr/share/fw/high/h\n/usr/share/fw/late/l\n\
         high\n/usr/share/fw/high/h\npost fafter\nlate\n/usr/share/fw/late/l\n"
    );
}

#[test]
fn package_triggers_run_as_rpm_runs_them() {
    // tw triggers on busybox (installed before it), on tdata (after it)
    // and on an old tdata (not installed).
    let tw = Pkg::new("tw", "1.0")
        .requires("busybox")
        .script(
            "triggerin -- busybox",
            "echo \"tw on busybox: $# $1 $2\" >> /usr/share/t-log",
        )
        .script(
            "triggerin -- tdata",
            "echo \"tw on tdata: $# $1 $2\" >> /usr/share/t-log",
        )
        .script(
            "triggerin -- tdata < 0.5",
            "echo \"tw on old tdata\" >> /usr/share/t-log",
        )
        .script("post", "echo post tw >> /usr/share/t-log")
        .entry(Entry::file("/usr/share/tw/data", "d\n"));
    let tdata = Pkg::new("tdata", "1.0")
        .requires("tw")
        .script("post", "echo post tdata >> /usr/share/t-log")
        .entry(Entry::file("/usr/share/tdata/data", "d\n"));
    let f = fixture_with(
        vec![tw, tdata],
        |_| false,
        &MANIFEST.replace("  - kernel-core\n", "  - kernel-core\n  - tdata\n"),
    );
    let cached_repo = compose_both_ways(&f);
    // After each %post, arguments 1 1; the trigger on an old tdata not.
    assert_eq!(
        ostree(&cached_repo, &["cat", REF, "/usr/share/t-log"]),
        "post tw\ntw on busybox: 2 1 1\npost tdata\ntw on tdata: 2 1 1\n"
    );
}

#[test]
fn prein_triggers_run_as_rpm_runs_them() {
    // pw has a %triggerprein on busybox (installed before it) and on pdata
    // (after it, which also sets it off before its own %pre).
    let pw = Pkg::new("pw", "1.0")
        .requires("busybox")
        .script(
            "triggerprein -- busybox",
            "echo \"pw on busybox: $# $1 $2\" >> /usr/share/p-log",
        )
        .script(
            "triggerprein -- pdata",
            "echo \"pw on pdata: $# $1 $2\" >> /usr/share/p-log",
        )
        .script("pre", "echo pre pw >> /usr/share/p-log")
        .entry(Entry::file("/usr/share/pw/data", "d\n"));
    let pdata = Pkg::new("pdata", "1.0")
        .requires("pw")
        .script("pre", "echo pre pdata >> /usr/share/p-log")
        .entry(Entry::file("/usr/share/pdata/data", "d\n"));
    let f = fixture_with(
        vec![pw, pdata],
        |_| false,
        &MANIFEST.replace("  - kernel-core\n", "  - kernel-core\n  - pdata\n"),
    );
    let cached_repo = compose_both_ways(&f);
    // Before each %pre; the package being installed counts 0 instances.
    assert_eq!(
        ostree(&cached_repo, &["cat", REF, "/usr/share/p-log"]),
        "pw on busybox: 2 0 1\npre pw\npw on pdata: 2 1 0\npre pdata\n"
    );
}

#[test]
fn file_capabilities_are_set_as_rpm_sets_them() {
    // Fedora's shadow-utils (newuidmap) and iputils ship files like these.
    let capped = Pkg::new("capped", "1.0")
        .requires("busybox")
        .entry(Entry::Caps {
            path: "/usr/bin/newuidmap-like".into(),
            content: "#!/bin/sh\necho uid\n".into(),
            caps: "cap_setuid=ep".into(),
        })
        .entry(Entry::Caps {
            path: "/usr/bin/ping-like".into(),
            content: "#!/bin/sh\necho ping\n".into(),
            caps: "cap_net_admin,cap_net_raw=p".into(),
        })
        .entry(Entry::exe("/usr/bin/plain", "#!/bin/sh\necho plain\n"));
    let f = fixture_with(
        vec![capped],
        |_| false,
        &MANIFEST.replace("  - kernel-core\n", "  - kernel-core\n  - capped\n"),
    );
    let cached_repo = compose_both_ways(&f);
    let xattrs = |path: &str| ostree(&cached_repo, &["ls", "-X", REF, path]);
    // cap_setuid (7) effective + permitted: v2 magic with the effective bit.
    let uidmap = xattrs("/usr/bin/newuidmap-like");
    assert!(uidmap.contains("security.capability"), "{uidmap}");
    assert!(!xattrs("/usr/bin/plain").contains("security.capability"));
    // The cache's copy of a file with capabilities has none: it was copied,
    // not linked.
    let entries = common::run_ok(
        Command::new("find")
            .arg(f.cache.join("pkgcache"))
            .args(["-name", "ping-like"]),
    );
    let cached_copy = entries
        .lines()
        .next()
        .expect("ping-like in the package cache");
    let getcap = common::run_ok(Command::new("getcap").arg(cached_copy));
    assert_eq!(getcap.trim(), "", "the cache's copy got capabilities");
}

#[test]
fn lua_triggers_fall_back_to_rpm() {
    let trig = Pkg::new("luatrig", "1.0")
        .requires("busybox")
        .script(
            "triggerin -p <lua> -- busybox",
            "io.open('/usr/share/lua-trigger-ran', 'w'):write('yes')",
        )
        .entry(Entry::file("/usr/share/luatrig/data", "d\n"));
    let f = fixture_with(
        vec![trig],
        |_| false,
        &MANIFEST.replace("  - kernel-core\n", "  - kernel-core\n  - luatrig\n"),
    );
    let out = compose(&f, &[]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("installing with rpm, not from the package cache: luatrig-1.0-1.noarch has a Lua trigger"),
        "{log}"
    );
    assert_eq!(
        ostree(&f.repo, &["cat", REF, "/usr/share/lua-trigger-ran"]),
        "yes"
    );
}

#[test]
fn a_failing_scriptlet_fails_the_cached_install_and_moves_no_ref() {
    let bad = Pkg::new("badpost", "1.0")
        .requires("busybox")
        .script(
            "post",
            "echo changed >> /usr/share/badpost/data\necho failing on purpose >&2; exit 3",
        )
        .entry(Entry::file("/usr/share/badpost/data", "d\n"));
    let f = fixture_with(vec![bad], |_| false, MANIFEST);
    // The cache is filled by a compose without the package...
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let manifest = std::fs::read_to_string(&f.manifest).unwrap();
    std::fs::write(
        &f.manifest,
        manifest.replace("  - kernel-core\n", "  - kernel-core\n  - badpost\n"),
    )
    .unwrap();
    let before = rev(&f.repo, REF);
    // ...so that adding it assembles the root from the cache.
    let out = compose(&f, &[]);
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("Package cache: 1 of 8 packages imported"),
        "{log}"
    );
    assert!(
        log.contains(
            "Error in %post scriptlet in rpm package badpost-1.0-1.noarch (exit status 3)"
        ),
        "{log}"
    );
    assert!(log.contains("failing on purpose"), "{log}");
    assert_eq!(rev(&f.repo, REF), before, "the ref moved");
    // The %post wrote into the cache's copy of its file before failing: the
    // failed compose dropped that entry all the same.
    assert!(log.contains("dropping the entry"), "{log}");
    let cached = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {}/pkgcache/v1/*/tree/usr/share/badpost/data 2>/dev/null; true",
            f.cache.display()
        ))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&cached.stdout).contains("changed"));
}

#[test]
fn file_conflicts_fail_the_cached_install_as_they_fail_rpms() {
    // filesystem's /usr/lib64 again, with another mode: rpm refuses the pair.
    let clash = Pkg::new("clash", "1.0")
        .arch("x86_64")
        .entry(Entry::owned_dir("/usr/lib64", 0o700, "root", "root"));
    let f = fixture_with(vec![clash], |_| false, MANIFEST);
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let before = rev(&f.repo, REF);
    let manifest = std::fs::read_to_string(&f.manifest).unwrap();
    std::fs::write(
        &f.manifest,
        manifest.replace("  - kernel-core\n", "  - kernel-core\n  - clash\n"),
    )
    .unwrap();
    for extra in [&["--no-package-cache"][..], &[]] {
        let out = compose(&f, extra);
        let log = text(&out);
        assert!(!out.status.success(), "{log}");
        assert!(
            log.contains("file /usr/lib64 conflicts between attempted installs of"),
            "{log}"
        );
        assert_eq!(rev(&f.repo, REF), before, "the ref moved");
        if extra.is_empty() {
            assert!(
                log.contains("Package cache: 1 of 8 packages imported"),
                "{log}"
            );
        }
    }
}

#[test]
fn a_payload_that_is_not_the_headers_fails_both_installs() {
    // Neither rpm's install (--nofiledigest) nor the cached install's
    // rpmdb-only transaction (no payload check of its own) hashes the files:
    // the payload digest must stop another build's payload either way.
    let pkg = |c: &str| Pkg::new("spliced", "1.0").entry(Entry::file("/usr/share/spliced", c));
    let f = fixture_with(vec![pkg(&"A".repeat(64))], |_| false, MANIFEST);
    // A first compose without it fills the cache with the others.
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let before = rev(&f.repo, REF);
    let rpms = f.dir.parent().unwrap().join("rpms");
    let packaged = rpms.join("Packages").join(pkg("").filename());
    let good = std::fs::read(&packaged).unwrap();
    let other = std::fs::read(build_rpm(&pkg(&"B".repeat(64)), &f.dir.join("b"))).unwrap();
    std::fs::write(&packaged, splice_payload(&good, &other)).unwrap();
    refresh_repo(&rpms);
    let manifest = std::fs::read_to_string(&f.manifest).unwrap();
    std::fs::write(
        &f.manifest,
        manifest.replace("  - kernel-core\n", "  - kernel-core\n  - spliced\n"),
    )
    .unwrap();
    // The dnf helper's check before rpm's transaction; the package
    // cache's, when it imports the package.
    for (extra, refusal) in [
        (
            &["--no-package-cache"][..],
            "spliced-1.0-1.noarch.rpm: payload digest mismatch",
        ),
        (&[], "payload digest mismatch"),
    ] {
        let out = compose(&f, extra);
        let log = text(&out);
        assert!(!out.status.success(), "{extra:?}: {log}");
        assert!(log.contains(refusal), "{extra:?}: {log}");
        assert!(log.contains("spliced"), "{extra:?}: {log}");
        assert_eq!(rev(&f.repo, REF), before, "{extra:?}: the ref moved");
    }
}
