/*
 * The compressor dracut pipes the initramfs through while ostree-composer
 * builds it (`dracut --compress PATH`), for trees whose kernel unpacks zstd
 * but which ship no zstd program; see dracut_zstd.rs.
 *
 * It reads the cpio archive on standard input and writes one zstd frame,
 * level 3, on standard output. One thread: dracut's cpio feeds it from the
 * other core, and cpio is the slower of the two (0.4 s for corpus-large's
 * 140 MB). The bytes depend only on the input and libzstd's version.
 *
 * Built static against the build host's libzstd (it runs chrooted in the
 * tree, which may have neither the library nor a C library as new as the
 * build host's). C, not Rust: the Rust zstd crate would make it a larger
 * program for the same four library calls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define LEVEL 3

static int fail(const char *what, size_t code)
{
    fprintf(stderr, "ostree-composer zstd: %s: %s\n", what, ZSTD_getErrorName(code));
    return 1;
}

static int write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(1, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "ostree-composer zstd: writing: %s\n", strerror(errno));
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(void)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (!cctx) {
        fprintf(stderr, "ostree-composer zstd: out of memory\n");
        return 1;
    }
    size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, LEVEL);
    if (ZSTD_isError(r))
        return fail("setting the level", r);

    size_t in_cap = ZSTD_CStreamInSize(), out_cap = ZSTD_CStreamOutSize();
    char *in_buf = malloc(in_cap), *out_buf = malloc(out_cap);
    if (!in_buf || !out_buf) {
        fprintf(stderr, "ostree-composer zstd: out of memory\n");
        return 1;
    }
    for (;;) {
        ssize_t n = read(0, in_buf, in_cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "ostree-composer zstd: reading: %s\n", strerror(errno));
            return 1;
        }
        ZSTD_EndDirective mode = n == 0 ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer input = {in_buf, (size_t)n, 0};
        size_t remaining;
        do {
            ZSTD_outBuffer output = {out_buf, out_cap, 0};
            remaining = ZSTD_compressStream2(cctx, &output, &input, mode);
            if (ZSTD_isError(remaining))
                return fail("compressing", remaining);
            if (write_all(out_buf, output.pos) != 0)
                return 1;
        } while (mode == ZSTD_e_end ? remaining != 0 : input.pos < input.size);
        if (n == 0)
            break;
    }
    ZSTD_freeCCtx(cctx);
    return 0;
}
