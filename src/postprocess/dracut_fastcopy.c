/*
 * Preloaded into the tree's dracut-install (and nothing else) while
 * ostree-composer builds an initramfs; see dracut_fastcopy.rs for how.
 *
 * dracut-install copies each file into the initramfs staging directory with
 * ioctl(FICLONE). Where the filesystem cannot clone (ext4, xfs without
 * reflink, overlayfs) that fails once, and from then on dracut-install forks
 * and execs `cp --preserve=mode,timestamps,ownership -fL` for every file:
 * about a thousand processes for a generic initramfs, a quarter of dracut's
 * time. Here FICLONE of one regular file onto another is answered with an
 * in-kernel copy (copy_file_range), so dracut-install takes its clone path:
 * it then sets the owner (fchown) and the times (futimes) itself.
 *
 * Two things make the result the same as cp's: the permission bits are set
 * from the source (dracut-install created the file under umask 022), and
 * set again after dracut-install's fchown, since chown clears setuid and
 * setgid. Times differ only below the second, which the cpio format does
 * not store.
 *
 * Any failure returns -1 with errno set, as a failed clone: dracut-install
 * then removes the file and falls back to cp, as without this object.
 *
 * Written in C, not Rust: it is loaded into another program's process, so it
 * must be small and must not bring a runtime. It calls only syscall(),
 * unsetenv() and errno, which glibc has exported since 2.2.5, so that it
 * loads into trees whose glibc is older than the build host's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* dracut-install's own children (ldd, cp for symlinks) must not load this
 * object: ldd would list it among every program's libraries, and dracut
 * would install it into the initramfs. */
__attribute__((constructor)) static void forget_preload(void)
{
    unsetenv("LD_PRELOAD");
}

/* Destination descriptors filled by FICLONE whose mode must be set again
 * after the next fchown: the inode (to not touch a reused descriptor) and
 * the source's st_mode. dracut-install has a handful of files open at once. */
#define TRACKED_FDS 1024
static struct {
    dev_t dev;
    ino_t ino;
    mode_t mode;
} cloned[TRACKED_FDS];

static int stat_fd(int fd, struct stat *st)
{
    return (int)syscall(SYS_fstat, fd, st);
}

static int copy_whole(int src, int dst)
{
    for (;;) {
        long n = syscall(SYS_copy_file_range, src, NULL, dst, NULL, (size_t)1 << 30, 0);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
    }
}

static int clone_by_copy(int dst, int src)
{
    struct stat from, to;
    if (stat_fd(src, &from) != 0 || stat_fd(dst, &to) != 0)
        return -1;
    if (!S_ISREG(from.st_mode) || !S_ISREG(to.st_mode) || to.st_size != 0) {
        errno = EOPNOTSUPP;
        return -1;
    }
    if (copy_whole(src, dst) != 0)
        return -1;
    if (syscall(SYS_fchmod, dst, from.st_mode & 07777) != 0)
        return -1;
    if (dst >= 0 && dst < TRACKED_FDS) {
        cloned[dst].dev = to.st_dev;
        cloned[dst].ino = to.st_ino;
        cloned[dst].mode = from.st_mode & 07777;
    }
    return 0;
}

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    unsigned long arg = va_arg(ap, unsigned long);
    va_end(ap);
    if (request == FICLONE)
        return clone_by_copy(fd, (int)arg);
    return (int)syscall(SYS_ioctl, fd, request, arg);
}

int fchown(int fd, uid_t owner, gid_t group)
{
    if (syscall(SYS_fchown, fd, owner, group) != 0)
        return -1;
    if (fd >= 0 && fd < TRACKED_FDS && cloned[fd].mode != 0) {
        struct stat st;
        mode_t mode = cloned[fd].mode;
        int same = stat_fd(fd, &st) == 0 && st.st_dev == cloned[fd].dev &&
                   st.st_ino == cloned[fd].ino;
        cloned[fd].mode = 0;
        if (same && syscall(SYS_fchmod, fd, mode) != 0)
            return -1;
    }
    return 0;
}
