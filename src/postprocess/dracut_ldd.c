/*
 * `ldd FILE` for dracut, without a shell: given to the tree's dracut as
 * DRACUT_LDD while ostree-composer builds an initramfs; see dracut_ldd.rs.
 *
 * glibc's ldd is a bash script. For one file it starts bash, runs the
 * dynamic loader three times (--version, --verify, then the trace) and
 * forks subshells around them: about 7 ms on the machines this was measured
 * on, 111 times for a generic initramfs (dracut-install asks about every
 * program and library it installs). This program does what that script does
 * for one file and no options, in the same order and with the same output,
 * with two loader runs. Anything else (options, several files, none) is
 * handed to the tree's own ldd.
 *
 * The environment gives what the script would have known:
 *   OSTREE_COMPOSER_LDD        the tree's ldd, for what is handed over;
 *   OSTREE_COMPOSER_LDD_RTLDS  its RTLDLIST, separated by ':'.
 * Only the script's `--version` probe is not run: it fails only for a loader
 * that cannot be executed, and then the `--verify` run cannot be executed
 * either, which is what is checked here (through a close-on-exec pipe).
 *
 * Built static (it runs chrooted in the tree, whose C library may be older
 * than the build host's) and small: C, not Rust.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MAX_ENV 4096
#define VERIFY_OUT_MAX 4096

/* The loader runs ended in these ways besides an exit status. */
enum { RAN = 0, NOT_EXECUTED = -1, FAILED = -2 };

/* Exec `program` with `argv` in a child whose stdout goes to `out_fd`
 * (-1: inherited) and stderr to `err_fd` (-1: inherited), with the
 * environment `envp`. Returns the exit status (128 + signal when killed,
 * as a shell reports it), NOT_EXECUTED when the exec failed, or FAILED. */
static int run(const char *program, char *const argv[], char *const envp[], int out_fd, int err_fd)
{
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0)
        return FAILED;
    pid_t pid = fork();
    if (pid < 0) {
        close(report[0]);
        close(report[1]);
        return FAILED;
    }
    if (pid == 0) {
        if (out_fd >= 0 && dup2(out_fd, 1) < 0)
            _exit(127);
        if (err_fd >= 0 && dup2(err_fd, 2) < 0)
            _exit(127);
        execve(program, argv, envp);
        int e = errno;
        ssize_t w = write(report[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(report[1]);
    int e;
    ssize_t n;
    do
        n = read(report[0], &e, sizeof e);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return FAILED;
    if (n == (ssize_t)sizeof e)
        return NOT_EXECUTED;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

/* `rtld --verify file`, its stdout read into `out` (trailing newlines
 * dropped, as a shell's command substitution does). */
static int verify(const char *rtld, const char *file, char *out, size_t cap)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return FAILED;
    char *argv[] = {(char *)rtld, "--verify", (char *)file, NULL};
    /* The pipe holds 64 KiB, more than --verify ever prints (nothing). */
    int ret = run(rtld, argv, environ, p[1], -1);
    close(p[1]);
    size_t len = 0;
    for (;;) {
        char buf[512];
        ssize_t n = read(p[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (len + 1 < cap)
                out[len++] = buf[i];
    }
    close(p[0]);
    while (len > 0 && out[len - 1] == '\n')
        len--;
    out[len] = '\0';
    return ret;
}

/* NAME=VALUE put first in a copy of the environment, replacing NAME. */
static int set_env(char **envp, int *count, const char *assignment)
{
    size_t name_len = strchr(assignment, '=') - assignment + 1;
    for (int i = 0; i < *count; i++)
        if (strncmp(envp[i], assignment, name_len) == 0) {
            envp[i] = (char *)assignment;
            return 0;
        }
    if (*count + 1 >= MAX_ENV)
        return -1;
    envp[(*count)++] = (char *)assignment;
    envp[*count] = NULL;
    return 0;
}

/* The script's try_trace: the loader lists the libraries, its stderr going
 * where its stdout goes; ldd fails when it does. */
static int trace(const char *rtld, const char *file, const char *verify_out)
{
    static char *envp[MAX_ENV];
    int count = 0;
    for (char **e = environ; *e && count + 1 < MAX_ENV; e++)
        envp[count++] = *e;
    envp[count] = NULL;
    char *library_version = malloc(strlen("LD_LIBRARY_VERSION=") + strlen(verify_out) + 1);
    if (!library_version)
        return 1;
    strcpy(library_version, "LD_LIBRARY_VERSION=");
    strcat(library_version, verify_out);
    const char *add[] = {"LD_TRACE_LOADED_OBJECTS=1", "LD_WARN=", "LD_BIND_NOW=", library_version,
                         "LD_VERBOSE="};
    for (size_t i = 0; i < sizeof add / sizeof add[0]; i++)
        if (set_env(envp, &count, add[i]) != 0)
            return 1;
    char *argv[] = {(char *)rtld, (char *)file, NULL};
    fflush(stdout);
    int ret = run(rtld, argv, envp, -1, 1);
    if (ret == NOT_EXECUTED) {
        /* As a shell says it. */
        fprintf(stderr, "ldd: %s: %s\n", rtld, strerror(ENOEXEC));
        return 1;
    }
    return ret == 0 ? 0 : 1;
}

static int hand_over(char **argv)
{
    const char *ldd = getenv("OSTREE_COMPOSER_LDD");
    if (!ldd) {
        fprintf(stderr, "ldd: OSTREE_COMPOSER_LDD is not set\n");
        return 127;
    }
    execv(ldd, argv);
    fprintf(stderr, "ldd: %s: %s\n", ldd, strerror(errno));
    return errno == ENOENT ? 127 : 126;
}

int main(int argc, char **argv)
{
    const char *rtlds = getenv("OSTREE_COMPOSER_LDD_RTLDS");
    if (argc != 2 || argv[1][0] == '-' || !rtlds || !*rtlds)
        return hand_over(argv);

    /* The script names a file without a slash ./FILE. */
    const char *given = argv[1];
    char *file = malloc(strlen(given) + 3);
    if (!file)
        return 1;
    strcpy(file, strchr(given, '/') ? "" : "./");
    strcat(file, given);

    struct stat st;
    if (stat(file, &st) != 0) {
        fprintf(stderr, "ldd: %s: No such file or directory\n", file);
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "ldd: %s: not regular file\n", file);
        return 1;
    }
    if (faccessat(AT_FDCWD, file, R_OK, AT_EACCESS) != 0) {
        fprintf(stderr, "ldd: error: you do not have read permission for `%s'\n", file);
        return 1;
    }

    char *list = strdup(rtlds);
    if (!list)
        return 1;
    static char verify_out[VERIFY_OUT_MAX];
    const char *chosen = NULL;
    int ret = 1;
    for (char *save = NULL, *rtld = strtok_r(list, ":", &save); rtld;
         rtld = strtok_r(NULL, ":", &save)) {
        if (faccessat(AT_FDCWD, rtld, X_OK, AT_EACCESS) != 0)
            continue;
        int r = verify(rtld, file, verify_out, sizeof verify_out);
        if (r == FAILED) {
            fprintf(stderr, "ldd: running %s: %s\n", rtld, strerror(errno));
            return 1;
        }
        if (r == NOT_EXECUTED)
            continue; /* the script's --version probe would have failed */
        ret = r;
        if (ret == 0 || ret == 2) {
            chosen = rtld;
            break;
        }
    }
    switch (ret) {
    case 1:
        fprintf(stderr, "\tnot a dynamic executable\n");
        return 1;
    case 0:
    case 2:
        return trace(chosen, file, verify_out);
    default:
        /* The script prints its (then empty) RTLD between the two words. */
        fprintf(stderr, "ldd: exited with unknown exit code (%d)\n", ret);
        return 1;
    }
}
