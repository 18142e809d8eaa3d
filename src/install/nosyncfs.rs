//! The dnf helper (and rpm, and the scriptlets it runs) without `syncfs`.
//!
//! rpm ends every transaction with `syncfs()` on each filesystem it wrote
//! (`rpmtsSync`, since rpm 4.15). For a compose that is a wait for nothing:
//! the root is scratch space, and the commit syncs the repository itself
//! before any ref moves. It is a wait on the critical path, though: after a
//! first compose imported a large tree into the package cache, rpm's sync of
//! the rpmdb it writes waited 0.7 s for a gigabyte of the cache's writeback,
//! which the compose would otherwise let happen in the background.
//!
//! rpm has no switch for this, so the helper runs under a seccomp filter that
//! answers `syncfs` with success without doing it. `fsync` and `fdatasync`
//! are untouched, so sqlite still makes its own files durable. A filter
//! needs the `no_new_privs` bit when the process lacks `CAP_SYS_ADMIN`; the
//! helper runs as root (in the container's user namespace), where setuid
//! and file capabilities grant nothing more.
//!
//! Best effort: a kernel without seccomp filters, or a container profile
//! that forbids them, leaves rpm's sync in place (only the wait comes back).
//!
//! Not for: anything but the helper's process tree.

use std::os::unix::process::CommandExt;

/// `AUDIT_ARCH_*` of this build's architecture (`linux/audit.h`; the libc
/// crate does not have these): the filter applies to native system calls
/// only, since `syncfs` has another number in other ABIs.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// Offsets in `struct seccomp_data`: `int nr; __u32 arch; ...`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

/// Run `cmd` with `syncfs` turned into a successful no-op (see the module doc).
pub fn skip_syncfs(cmd: &mut std::process::Command) {
    let Some(arch) = AUDIT_ARCH else {
        return;
    };
    // SAFETY: between fork and exec only prctl and seccomp are called, on
    // a filter built on this stack; both are async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            install_filter(arch);
            Ok(())
        });
    }
}

/// Install the filter in the calling process; failures are ignored (see
/// the module doc).
fn install_filter(arch: u32) {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let filter = [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, ARCH_OFFSET),
        // Another ABI: allowed (skip to the last instruction).
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, arch, 0, 3),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, NR_OFFSET),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_syncfs as u32,
            0,
            1,
        ),
        // "Error" 0: the call returns 0 without running.
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `program` points at `filter`, both alive for the call; the
    // kernel copies the filter.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return;
        }
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `syncfs(-1)` and `fsync(-1)` return in a child: an invalid
    /// descriptor makes both fail unless the filter answers first.
    fn calls_in_child(filtered: bool) -> String {
        let mut cmd = std::process::Command::new("/usr/bin/python3");
        cmd.args([
            "-c",
            "import ctypes; c = ctypes.CDLL(None, use_errno=True); \
             print(c.syncfs(-1), c.fsync(-1))",
        ]);
        if filtered {
            skip_syncfs(&mut cmd);
        }
        let out = cmd.output().expect("running /usr/bin/python3");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn syncfs_succeeds_without_running_and_fsync_still_runs() {
        assert_eq!(calls_in_child(false), "-1 -1");
        if AUDIT_ARCH.is_some() {
            assert_eq!(calls_in_child(true), "0 -1");
        }
    }
}
