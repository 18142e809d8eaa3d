//! Which files a program opens in a directory tree while it runs, and
//! whether it changes anything there.
//!
//! The initramfs cache ([`super::initramfs_cache`]) needs to know what a
//! dracut run read. dracut is a shell program that forks a few thousand
//! processes, so tracing system calls is out (under strace a 4.8 s run took
//! 13.8 s), and fanotify needs CAP_SYS_ADMIN, which a rootless container
//! does not have. inotify works unprivileged: one watch per directory
//! reports each successful open of an entry of that directory (the exec of a
//! program and the loader's opens of libraries included), and each change.
//! The event names the directory the file was reached through, so a file
//! opened through a symlinked directory is reported at its real place.
//!
//! What inotify does not report (stat, failed lookups, readlink) the caller
//! covers otherwise: the initramfs cache fingerprints the listing of the
//! whole tree.
//!
//! Not for: attributing opens to a process. Anything that opens a file of
//! the tree while the trace runs counts, which only makes the trace larger.

use std::collections::{BTreeSet, HashMap};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

/// What a traced run did to the tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenTrace {
    /// Regular files (and other non-directories) opened, relative to the
    /// root.
    pub opened: BTreeSet<PathBuf>,
    /// Paths that were created, written, deleted, renamed or had their
    /// attributes changed.
    pub changed: BTreeSet<PathBuf>,
    /// The kernel's event queue overflowed: events were lost.
    pub overflowed: bool,
}

const CHANGE_EVENTS: ReadFlags = ReadFlags::MODIFY
    .union(ReadFlags::ATTRIB)
    .union(ReadFlags::CLOSE_WRITE)
    .union(ReadFlags::MOVED_FROM)
    .union(ReadFlags::MOVED_TO)
    .union(ReadFlags::CREATE)
    .union(ReadFlags::DELETE)
    .union(ReadFlags::DELETE_SELF)
    .union(ReadFlags::MOVE_SELF)
    .union(ReadFlags::IGNORED)
    .union(ReadFlags::UNMOUNT);

/// A running trace: watches on every directory, and a thread that reads the
/// events as they come (the kernel queue holds 16384 by default; dracut
/// makes more).
pub struct Tracer {
    wake: OwnedFd,
    thread: Option<JoinHandle<Result<OpenTrace>>>,
}

impl Tracer {
    /// Watch `dirs` (relative to `root`, `""` for the root itself). Events
    /// for paths in `ignored` or below them are dropped. Fails when a watch
    /// cannot be added (e.g. `fs.inotify.max_user_watches` is too low).
    pub fn start(root: &Path, dirs: &[PathBuf], ignored: &[PathBuf]) -> Result<Tracer> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .context("Creating an inotify instance")?;
        let mask = WatchFlags::OPEN
            | WatchFlags::MODIFY
            | WatchFlags::ATTRIB
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR
            | WatchFlags::DONT_FOLLOW;
        let mut by_wd = HashMap::with_capacity(dirs.len());
        for d in dirs {
            let wd = inotify::add_watch(&fd, root.join(d), mask).with_context(|| {
                format!(
                    "Watching {} ({} directories; see fs.inotify.max_user_watches)",
                    root.join(d).display(),
                    dirs.len()
                )
            })?;
            by_wd.insert(wd, d.clone());
        }
        let wake = eventfd(0, EventfdFlags::CLOEXEC).context("Creating an eventfd")?;
        let wake_reader = wake.try_clone().context("Duplicating the eventfd")?;
        let ignored = ignored.to_vec();
        let thread = std::thread::Builder::new()
            .name("opentrace".into())
            .spawn(move || read_events(fd, wake_reader, by_wd, ignored))
            .context("Starting the trace thread")?;
        Ok(Tracer {
            wake,
            thread: Some(thread),
        })
    }

    /// Stop and return what was seen. Call after the traced program has
    /// exited: its events are all queued by then.
    pub fn finish(mut self) -> Result<OpenTrace> {
        self.stop()
    }

    fn stop(&mut self) -> Result<OpenTrace> {
        let Some(thread) = self.thread.take() else {
            return Err(anyhow!("the trace was already stopped"));
        };
        rustix::io::write(&self.wake, &1u64.to_ne_bytes()).context("Waking the trace thread")?;
        thread
            .join()
            .map_err(|_| anyhow!("the trace thread panicked"))?
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

fn is_ignored(path: &Path, ignored: &[PathBuf]) -> bool {
    ignored.iter().any(|i| path.starts_with(i))
}

/// The trace thread: read events until woken, then drain what is left.
fn read_events(
    fd: OwnedFd,
    wake: OwnedFd,
    by_wd: HashMap<i32, PathBuf>,
    ignored: Vec<PathBuf>,
) -> Result<OpenTrace> {
    let mut trace = OpenTrace::default();
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 256 * 1024];
    let mut stopping = false;
    loop {
        let mut reader = inotify::Reader::new(fd.as_fd(), &mut buf);
        loop {
            let ev = match reader.next() {
                Ok(ev) => ev,
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e).context("Reading inotify events"),
            };
            let flags = ev.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                trace.overflowed = true;
                continue;
            }
            let Some(dir) = by_wd.get(&ev.wd()) else {
                continue;
            };
            let path = match ev.file_name() {
                Some(name) => dir.join(std::ffi::OsStr::from_bytes(name.to_bytes())),
                None => dir.clone(),
            };
            if is_ignored(&path, &ignored) {
                continue;
            }
            if flags.intersects(CHANGE_EVENTS) {
                trace.changed.insert(path.clone());
            }
            if flags.contains(ReadFlags::OPEN) && !flags.contains(ReadFlags::ISDIR) {
                trace.opened.insert(path);
            }
        }
        if stopping {
            return Ok(trace);
        }
        let mut fds = [
            PollFd::new(&fd, PollFlags::IN),
            PollFd::new(&wake, PollFlags::IN),
        ];
        match poll(&mut fds, -1) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("Waiting for inotify events"),
        }
        // Woken: one more pass drains the events queued before the wake.
        stopping = !fds[1].revents().is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs_of(root: &Path) -> Vec<PathBuf> {
        let mut out = vec![PathBuf::new()];
        let mut i = 0;
        while i < out.len() {
            for e in std::fs::read_dir(root.join(&out[i])).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    out.push(out[i].join(e.file_name()));
                }
            }
            i += 1;
        }
        out
    }

    #[test]
    fn opens_execs_and_changes_are_seen_from_another_process() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("scratch")).unwrap();
        std::fs::write(root.join("etc/read-me"), "x").unwrap();
        std::fs::write(root.join("etc/not-read"), "x").unwrap();
        std::fs::copy("/bin/true", root.join("usr/bin/true")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();

        let tracer = Tracer::start(root, &dirs_of(root), &[PathBuf::from("scratch")]).unwrap();
        // Through the symlinked directory: reported at the real place.
        let st = std::process::Command::new(root.join("bin/true"))
            .status()
            .unwrap();
        assert!(st.success());
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg("cat etc/read-me >/dev/null && ls etc >/dev/null && echo y > scratch/out")
            .current_dir(root)
            .status()
            .unwrap();
        assert!(st.success());
        let trace = tracer.finish().unwrap();
        let opened: Vec<_> = trace.opened.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(opened, ["etc/read-me", "usr/bin/true"]);
        assert!(!trace.overflowed && trace.changed.is_empty(), "{trace:?}");

        let tracer = Tracer::start(root, &dirs_of(root), &[]).unwrap();
        std::fs::write(root.join("etc/new"), "y").unwrap();
        let trace = tracer.finish().unwrap();
        assert_eq!(trace.changed, [PathBuf::from("etc/new")].into());
        assert_eq!(trace.opened.len(), 1, "the write's open counts too");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let e = Tracer::start(t.path(), &[PathBuf::from("nope")], &[])
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
    }
}
