/*
 * multiplane launcher: start multiplane's own Python runtime, never the node's libc or Python.
 *
 * A runtime tree (see packaging/build_runtime.py) holds the dynamic loader, the C libraries,
 * the interpreter, the standard library and multiplane. This static program finds a tree and
 * runs `<tree>/ld-linux-x86-64.so.2 --inhibit-cache --library-path <tree>/lib <tree>/python3.11
 * <tree>/boot.py <argv[0]> <args>` with the caller's environment untouched.
 *
 * Two forms:
 *   installed   the file carries no payload: the tree is <dir of this file>/.multiplane/current
 *               (a symlink `multiplane install` switches atomically). Nothing is written.
 *   self-contained  the file ends with a payload and a trailer (dist/multiplane): the tree is
 *               unpacked once per build into the first usable of $MULTIPLANE_UNPACK_DIR,
 *               /var/lib/cni/multiplane/run, /run/multiplane, /var/tmp/multiplane,
 *               /tmp/multiplane, /dev/shm/multiplane (writable, not mounted noexec), and
 *               reused by every later call. An unpack in progress lives in `<id>.tmp-<pid>`;
 *               one whose process is gone (its flock is free) is removed by the next call.
 *
 * Every user of a tree holds a shared flock on `<tree>/.lock` for its whole life (the
 * descriptor is inherited across exec); whoever removes a tree first takes the lock
 * exclusively, so a tree in use is never removed. On any failure the launcher says on
 * stderr what it tried and, when called as a CNI plugin, prints one CNI error object.
 *
 * One hidden mode, checked before anything else: `launcher --exec-in-root ROOT PATH` runs
 * PATH inside ROOT (see exec_in_root). The node daemon uses it to start a host's plugin.
 *
 * Before any of this, a CNI call (CNI_COMMAND set, not VERSION, no arguments, a personality's
 * name) takes the first hop (see first_hop, decision 0014): it hands the call to the node
 * daemon and prints its answer without starting Python. Only the regular case is done here;
 * for anything else Python starts as above and its client (src/multiplane/client.py) decides,
 * going on from where the first hop stopped. Non-CNI uses (install, daemon, ipam, tools)
 * never take it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#define MAGIC "MPRUNTM1"
#define TRAILER_SIZE 48 /* magic[8] payload_offset[8] payload_size[8] id[24] (little endian) */
#define ID_SIZE 24

static char tried[4096];

static void json_escaped(FILE *out, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
}

static void fail(const char *fmt, ...) {
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "multiplane: %s\n", msg);
    const char *command = getenv("CNI_COMMAND");
    if (command && *command) {
        fputs("{\n    \"cniVersion\": \"1.1.0\",\n    \"code\": 999,\n    \"msg\": \"", stdout);
        json_escaped(stdout, msg);
        fputs("\"\n}", stdout);
        fflush(stdout);
    }
    exit(1);
}

/* A path built from parts; a path longer than PATH_MAX is refused rather than cut. */
static void pathf(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_MAX) fail("path too long: %.200s...", buf);
}

static void note(const char *where, const char *why) {
    size_t used = strlen(tried);
    snprintf(tried + used, sizeof tried - used, "%s%s (%s)", used ? ", " : "", where, why);
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- trees in use: the shared lock ------------------------------------------------------ */

/* Hold a shared lock on <tree>/.lock (kept open across exec) if the tree is complete. */
static int hold_tree(const char *tree) {
    char path[PATH_MAX];
    pathf(path, "%s/.lock", tree);
    int fd = open(path, O_RDONLY | O_NOFOLLOW);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    pathf(path, "%s/.complete", tree);
    if (access(path, F_OK) != 0) { /* removed while we locked it */
        close(fd);
        return -1;
    }
    return fd;
}

static int run_tree(const char *tree, int argc, char **argv) {
    char ld[PATH_MAX], lib[PATH_MAX], py[PATH_MAX], boot[PATH_MAX];
    pathf(ld, "%s/ld-linux-x86-64.so.2", tree);
    pathf(lib, "%s/lib", tree);
    pathf(py, "%s/python3.11", tree);
    pathf(boot, "%s/boot.py", tree);
    char **args = calloc((size_t)argc + 8, sizeof *args);
    if (!args) fail("out of memory");
    int n = 0;
    args[n++] = ld;
    args[n++] = "--inhibit-cache";
    args[n++] = "--library-path";
    args[n++] = lib;
    args[n++] = py;
    args[n++] = boot;
    for (int i = 0; i < argc; i++) args[n++] = argv[i];
    args[n] = NULL;
    execv(ld, args);
    int err = errno;
    free(args);
    return err;
}

/* ---- removing trees --------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Remove <base>/<name> if nobody holds its lock; a tree is first renamed out of the way. */
static void remove_if_unused(const char *base, const char *name) {
    char dir[PATH_MAX], lock[PATH_MAX], gone[PATH_MAX];
    pathf(dir, "%s/%s", base, name);
    pathf(lock, "%s/.lock", dir);
    int fd = open(lock, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return; /* in use */
    }
    if (fd < 0) { /* no lock file: an unpack killed before it made one, if its process is gone */
        const char *tmp = strstr(name, ".tmp-");
        long pid = tmp ? strtol(tmp + 5, NULL, 10) : 0;
        struct stat st;
        int dead = pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
        if (!dead && (lstat(dir, &st) != 0 || time(NULL) - st.st_mtime < 60)) return;
    }
    pathf(gone, "%s/.gone-%d-%s", base, (int)getpid(), name);
    if (rename(dir, gone) == 0) rm_tree(gone);
    if (fd >= 0) close(fd);
}

/* Drop unpacks in progress whose process is gone, and (after an unpack) other builds' trees. */
static void sweep(const char *base, const char *keep_id, int old_trees) {
    DIR *d = opendir(base);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (name[0] == '.' && strncmp(name, ".gone-", 6) != 0) continue;
        if (strncmp(name, ".gone-", 6) == 0) {
            char path[PATH_MAX];
            pathf(path, "%s/%s", base, name);
            char *pid_end = NULL;
            long pid = strtol(name + 6, &pid_end, 10);
            if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) rm_tree(path);
        } else if (strstr(name, ".tmp-")) {
            remove_if_unused(base, name);
        } else if (old_trees && strcmp(name, keep_id) != 0) {
            remove_if_unused(base, name);
        }
    }
    closedir(d);
}

/* ---- unpacking the payload -------------------------------------------------------------- */

struct reader {
    int fd;
    uint64_t pos, end;
};

static int read_exact(struct reader *r, void *buf, size_t len) {
    if (r->pos + len > r->end) return -1;
    size_t done = 0;
    while (done < len) {
        ssize_t got = pread(r->fd, (char *)buf + done, len - done, (off_t)(r->pos + done));
        if (got <= 0) return -1;
        done += (size_t)got;
    }
    r->pos += len;
    return 0;
}

static int mkdirs(char *path, mode_t mode) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int rc = mkdir(path, mode);
        *p = '/';
        if (rc != 0 && errno != EEXIST) return -1;
    }
    if (mkdir(path, mode) != 0 && errno != EEXIST) return -1;
    return 0;
}

static int safe_rel(const char *rel) {
    if (rel[0] == '/' || rel[0] == '\0') return 0;
    for (const char *p = rel; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) return 0;
        p += len + (slash ? 1 : 0);
    }
    return 1;
}

/* Make <tmp> and hold its .lock exclusively; the descriptor, or -1 with `why`.
 *
 * Another call's sweep opens .lock and tries LOCK_EX|LOCK_NB. If it does so between our open
 * and our flock, it wins the lock, renames the directory away and removes it; our flock then
 * returns on a lock file that is no longer in <tmp> (and mkdirs would later re-create <tmp>
 * without one, leaving a tree nobody can lock). So the lock counts only if <tmp>/.lock is
 * still the file we hold; otherwise start again. */
static int begin_unpack(const char *tmp, char *why, size_t whylen) {
    char path[PATH_MAX];
    pathf(path, "%s/.lock", tmp);
    for (int attempt = 0; attempt < 5; attempt++) {
        rm_tree(tmp);
        if (mkdir(tmp, 0755) != 0) {
            snprintf(why, whylen, "mkdir: %s", strerror(errno));
            return -1;
        }
        int lock = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (lock < 0 && errno == ENOENT) continue; /* swept before we made the lock file */
        if (lock < 0 || flock(lock, LOCK_EX) != 0) {
            snprintf(why, whylen, "lock: %s", strerror(errno));
            if (lock >= 0) close(lock);
            rm_tree(tmp);
            return -1;
        }
        struct stat held, named;
        if (fstat(lock, &held) == 0 && stat(path, &named) == 0 && held.st_dev == named.st_dev &&
            held.st_ino == named.st_ino)
            return lock;
        close(lock); /* swept between our open and our flock */
    }
    snprintf(why, whylen, "its unpack directory kept being removed by other calls");
    return -1;
}

/* Unpack into <base>/<id>.tmp-<pid>, then rename to <base>/<id>. 0 on success (or if another won). */
static int unpack(int self, uint64_t off, uint64_t size, const char *base, const char *id, char *why, size_t whylen) {
    char tmp[PATH_MAX], path[PATH_MAX], final[PATH_MAX];
    pathf(tmp, "%s/%s.tmp-%d", base, id, (int)getpid());
    pathf(final, "%s/%s", base, id);
    int lock = begin_unpack(tmp, why, whylen);
    if (lock < 0) return -1;
    struct reader r = {self, off, off + size};
    static char buf[1 << 16];
    for (;;) {
        unsigned char kind, head[12];
        uint16_t plen;
        if (read_exact(&r, &kind, 1) != 0) goto corrupt;
        if (kind == 'E') break;
        if (kind != 'F' || read_exact(&r, &plen, 2) != 0 || plen == 0 || plen >= 1024) goto corrupt;
        char rel[1024];
        if (read_exact(&r, rel, plen) != 0) goto corrupt;
        rel[plen] = '\0';
        if (read_exact(&r, head, 12) != 0 || !safe_rel(rel)) goto corrupt;
        uint32_t mode = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 | (uint32_t)head[3] << 24;
        uint64_t left = le64(head + 4);
        pathf(path, "%s/%s", tmp, rel);
        char *slash = strrchr(path, '/');
        *slash = '\0';
        if (mkdirs(path, 0755) != 0) goto io;
        *slash = '/';
        int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
        if (out < 0) goto io;
        while (left > 0) {
            size_t chunk = left < sizeof buf ? (size_t)left : sizeof buf;
            if (read_exact(&r, buf, chunk) != 0) {
                close(out);
                goto corrupt;
            }
            for (size_t done = 0; done < chunk;) {
                ssize_t put = write(out, buf + done, chunk - done);
                if (put <= 0) {
                    close(out);
                    goto io;
                }
                done += (size_t)put;
            }
            left -= chunk;
        }
        fchmod(out, mode & 07777);
        close(out);
    }
    syncfs(lock); /* the marker below must never stand for files still in the page cache only */
    pathf(path, "%s/.complete", tmp);
    int marker = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (marker < 0) goto io;
    close(marker);
    if (rename(tmp, final) != 0) rm_tree(tmp); /* another call unpacked the same build first */
    close(lock);
    return 0;
corrupt:
    snprintf(why, whylen, "the payload of this file is damaged");
    rm_tree(tmp);
    close(lock);
    return -1;
io:
    snprintf(why, whylen, "%s", strerror(errno));
    rm_tree(tmp);
    close(lock);
    return -1;
}

static int usable_base(const char *base, char *why, size_t whylen) {
    char path[PATH_MAX];
    pathf(path, "%s", base);
    int existed = access(base, F_OK) == 0;
    if (mkdirs(path, 0700) != 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return 0;
    }
    struct statvfs vfs;
    if (statvfs(base, &vfs) == 0 && (vfs.f_flag & ST_NOEXEC)) {
        snprintf(why, whylen, "mounted noexec");
    } else if (statvfs(base, &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
        snprintf(why, whylen, "read-only");
    } else if (access(base, W_OK | X_OK) != 0) {
        snprintf(why, whylen, "%s", strerror(errno));
    } else {
        return 1;
    }
    if (!existed) rmdir(base); /* leave no empty directory where we will not unpack */
    return 0;
}

static void self_contained(int self, const unsigned char *trailer, int argc, char **argv) {
    uint64_t off = le64(trailer + 8), size = le64(trailer + 16);
    char id[ID_SIZE + 1];
    memcpy(id, trailer + 24, ID_SIZE);
    id[ID_SIZE] = '\0';
    id[strcspn(id, " ")] = '\0';
    if (!safe_rel(id) || strchr(id, '/')) fail("the payload of this file is damaged (bad build id)");
    const char *bases[] = {getenv("MULTIPLANE_UNPACK_DIR"), "/var/lib/cni/multiplane/run", "/run/multiplane",
                           "/var/tmp/multiplane", "/tmp/multiplane", "/dev/shm/multiplane"};
    for (size_t i = 0; i < sizeof bases / sizeof *bases; i++) {
        const char *base = bases[i];
        char why[512], tree[PATH_MAX];
        if (!base || base[0] != '/') continue;
        if (!usable_base(base, why, sizeof why)) {
            note(base, why);
            continue;
        }
        pathf(tree, "%s/%s", base, id);
        sweep(base, id, 0);
        for (int attempt = 0; attempt < 5; attempt++) {
            int fd = hold_tree(tree);
            if (fd >= 0) {
                int err = run_tree(tree, argc, argv);
                close(fd);
                if (err == ENOENT) continue;
                snprintf(why, sizeof why, "exec: %s", strerror(err));
                break;
            }
            if (unpack(self, off, size, base, id, why, sizeof why) != 0) break;
            sweep(base, id, 1); /* a new build: earlier builds nobody runs any more can go */
            snprintf(why, sizeof why, "unpacked but could not be started");
        }
        note(base, why);
    }
    fail("cannot unpack the runtime; tried: %s", tried);
}

static void installed(const char *dir, int argc, char **argv) {
    char link[PATH_MAX], tree[PATH_MAX];
    pathf(link, "%s/.multiplane/current", dir);
    for (int attempt = 0; attempt < 20; attempt++) {
        if (!realpath(link, tree)) {
            if (errno == ENOENT && attempt < 19) {
                usleep(5000); /* between an uninstall's removal and an install's switch */
                continue;
            }
            fail("no runtime at %s (%s): run `multiplane install`, or use the self-contained dist/multiplane", link,
                 strerror(errno));
        }
        int fd = hold_tree(tree);
        if (fd < 0) { /* being removed after a switch: read the link again */
            usleep(2000);
            continue;
        }
        int err = run_tree(tree, argc, argv);
        close(fd);
        if (err != ENOENT) fail("cannot start the runtime in %s: %s", tree, strerror(err));
    }
    fail("the runtime at %s kept changing or disappearing while starting", link);
}

/* ---- the first hop: a CNI call straight to the node daemon ---------------------------------
 *
 * Only the regular case of src/multiplane/client.py, in C, so that a call the daemon serves
 * starts no interpreter. It decides nothing: every other case is the Python client's, which
 * runs as before and picks up where this left off. In order:
 *
 *   not a CNI call, VERSION, arguments, a name the build does not know, MULTIPLANE_DAEMON=off,
 *   no stdin or a terminal: Python exactly as before (stdin untouched, nothing sent).
 *   stdin (all of it, at most MAX_FIELD bytes) mentions `daemonSocket`, is larger than
 *   MAX_FIELD, or the socket does not connect within CONNECT_TIMEOUT: Python, with the bytes
 *   read given back as its fd 0 (a memfd); it connects again itself and says why it falls back.
 *   connected: the request (wire.request) goes out, the first byte is peeked; b"A" is taken,
 *   then b"R", status, stdout and stderr are read; stderr and stdout are written and the
 *   launcher exits with the status. No Python at all.
 *   anything else once connected: Python, with the socket kept open for it:
 *     MULTIPLANE_CLIENT_FD     the socket's descriptor
 *     MULTIPLANE_CLIENT_STATE  "unsent ERRNO"   the request did not go out completely
 *                                               (ETIMEDOUT: not within PICKUP_TIMEOUT)
 *                              "sent DEADLINE"  it went out; nothing was read (the first byte
 *                                               was only peeked); wait for it until DEADLINE
 *                              "accepted DEADLINE [FD]"  b"A" was read; FD (a memfd) holds the
 *                                               answer bytes read after it, if any
 *   DEADLINE is CLOCK_MONOTONIC in nanoseconds (Python's time.monotonic_ns()). client.py
 *   removes both variables before anything could pass them on.
 */

/* client.py's and wire.py's values; tests/packaging/test_launcher_client.py checks each one. */
#define DEFAULT_SOCKET "/run/multiplane/multiplane.sock"
#define CONNECT_TIMEOUT_MS 1000
#define PICKUP_TIMEOUT_MS 5000
#define ANSWER_TIMEOUT_MS 300000
#define MAX_FIELD ((size_t)16 << 20)
#define WIRE_MAGIC "MPD1"
#define MS ((int64_t)1000000)

/* The personalities (multiplane.plugins.REGISTRY), given by build_runtime.py as
 * -DMP_PERSONALITIES='"multiplane","multiplane-host-local",...,'. Without it: no first hop. */
#ifndef MP_PERSONALITIES
#define MP_PERSONALITIES
#endif
static const char *const personalities[] = {MP_PERSONALITIES NULL};

struct buf {
    unsigned char *data;
    size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t more) {
    if (more > SIZE_MAX / 2 - b->len) return -1;
    size_t want = b->len + more, cap = b->cap ? b->cap : 4096;
    if (want <= b->cap) return 0;
    while (cap < want) cap *= 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_add(struct buf *b, const void *p, size_t n) {
    if (buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* A wire field: 4-byte big-endian length, then the bytes. */
static int buf_field(struct buf *b, const void *p, size_t n) {
    unsigned char head[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                             (unsigned char)n};
    if (n > MAX_FIELD) return -1;
    return buf_add(b, head, 4) != 0 || buf_add(b, p, n) != 0 ? -1 : 0;
}

static size_t be32(const unsigned char *p) {
    return (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | (size_t)p[3];
}

static int64_t now_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return INT64_MAX; /* cannot happen: times out at once */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait until `fd` is ready for `events`: 1, 0 when `deadline` passed, -1 on an error (errno). */
static int wait_for(int fd, short events, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - now_ns();
        if (left <= 0) return 0;
        int64_t ms = left / MS + 1;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (rc > 0) return 1; /* POLLERR and POLLHUP too: the next send or recv says what */
        if (rc < 0 && errno != EINTR) return -1;
    }
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) return -1;
        p += put;
        n -= (size_t)put;
    }
    return 0;
}

/* A descriptor to read `n` bytes (then `rest`'s remaining bytes, if rest >= 0) from: a memfd,
 * else a pipe when they fit in one. -1 when neither works. Close-on-exec as asked. */
static int holding(const unsigned char *p, size_t n, int rest, int cloexec) {
    int fd = memfd_create("multiplane-client", cloexec ? MFD_CLOEXEC : 0);
    if (fd >= 0) {
        static unsigned char chunk[1 << 16];
        int ok = write_all(fd, p, n) == 0;
        while (ok && rest >= 0) {
            ssize_t got = read(rest, chunk, sizeof chunk);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break; /* its end (or an error, which Python would have met at the same point) */
            ok = write_all(fd, chunk, (size_t)got) == 0;
        }
        if (ok && lseek(fd, 0, SEEK_SET) == 0) return fd;
        close(fd);
        return -1;
    }
    int pipes[2];
    if (rest >= 0 || pipe2(pipes, cloexec ? O_CLOEXEC : 0) != 0) return -1;
    if (n > 65536 && fcntl(pipes[1], F_SETPIPE_SZ, n > INT_MAX ? INT_MAX : (int)n) < 0) n = SIZE_MAX;
    if (n == SIZE_MAX || write_all(pipes[1], p, n) != 0) {
        close(pipes[0]);
        close(pipes[1]);
        return -1;
    }
    close(pipes[1]);
    return pipes[0];
}

/* Python's fd 0: the bytes already read from stdin, then whatever stdin still holds (`more`). */
static void give_back(const struct buf *in, int more) {
    int fd = holding(in->data, in->len, more ? 0 : -1, 1);
    if (fd < 0) fail("cannot hand the network config on to the runtime: %s", strerror(errno));
    if (dup2(fd, 0) < 0) fail("cannot hand the network config on to the runtime: dup2: %s", strerror(errno));
    close(fd);
}

/* All of stdin: 0; 1 when it holds more than MAX_FIELD bytes (the rest is still in fd 0); -1
 * on a read error or no memory. */
static int read_stdin(struct buf *in) {
    for (;;) {
        if (buf_reserve(in, 1 << 16) != 0) return -1;
        size_t room = in->cap - in->len;
        if (room > MAX_FIELD + 1 - in->len) room = MAX_FIELD + 1 - in->len;
        ssize_t got = read(0, in->data + in->len, room);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return -1;
        if (got == 0) return 0;
        in->len += (size_t)got;
        if (in->len > MAX_FIELD) return 1;
    }
}

/* A connected unix stream socket (non-blocking, close-on-exec), or -1 for any failure. */
static int connect_daemon(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof addr.sun_path) return -1;
    memcpy(addr.sun_path, path, n + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return fd;
    if (errno == EINPROGRESS || errno == EINTR) { /* completes in the background */
        int err = 0;
        socklen_t len = sizeof err;
        if (wait_for(fd, POLLOUT, now_ns() + CONNECT_TIMEOUT_MS * MS) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
            return fd;
    }
    close(fd);
    return -1;
}

/* Send all of it by `deadline`: 0, or the errno that stopped it (ETIMEDOUT: the time ran out). */
static int send_all(int fd, const unsigned char *p, size_t n, int64_t deadline) {
    while (n > 0) {
        ssize_t put = send(fd, p, n, MSG_NOSIGNAL);
        if (put > 0) {
            p += put;
            n -= (size_t)put;
        } else if (put < 0 && errno == EINTR) {
            continue;
        } else if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_for(fd, POLLOUT, deadline);
            if (rc != 1) return rc == 0 ? ETIMEDOUT : errno;
        } else {
            return put < 0 ? errno : EPIPE;
        }
    }
    return 0;
}

/* Up to n bytes by `deadline`: their count, 0 when the peer closed, -1 with errno (ETIMEDOUT). */
static ssize_t recv_by(int fd, void *p, size_t n, int flags, int64_t deadline) {
    for (;;) {
        ssize_t got = recv(fd, p, n, flags | MSG_DONTWAIT);
        if (got >= 0) return got;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        int rc = wait_for(fd, POLLIN, deadline);
        if (rc == 0) errno = ETIMEDOUT;
        if (rc != 1) return -1;
    }
}

/* The LC_CTYPE the interpreter's start-up will put in its environment, or NULL: in the C locale
 * Python coerces (PEP 538, CPython's _Py_CoerceLegacyLocale) to the first of C.UTF-8, C.utf8
 * and UTF-8 that loads and names a codeset, unless LC_ALL is set. The same calls here, with
 * the same glibc version and locale files, give the same answer. */
static const char *coerced_ctype(void) {
    static const char *const targets[] = {"C.UTF-8", "C.utf8", "UTF-8"};
    const char *all = getenv("LC_ALL"), *now;
    if (all && *all) return NULL;
    setlocale(LC_CTYPE, "");
    now = setlocale(LC_CTYPE, NULL);
    if (!now || strcmp(now, "C") != 0) return NULL;
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        if (!setlocale(LC_CTYPE, targets[i])) continue;
        const char *codeset = nl_langinfo(CODESET);
        if (codeset && *codeset) return targets[i];
        setlocale(LC_CTYPE, "");
    }
    return NULL;
}

/* The environment client.py sends: os.environb of the interpreter that would start, i.e.
 * every entry with a '=' (the name is what precedes the first), the first of each name, and
 * LC_CTYPE as its start-up sets it (in place, or appended). -1: too many entries for the
 * pairwise check, or no memory (then Python sends it). */
static int environ_block(struct buf *env) {
    const char *ctype = coerced_ctype();
    int ctype_set = 0;
    size_t count = 0;
    for (char **e = environ; *e; e++, count++) {
        const char *eq = strchr(*e, '=');
        if (count > 4096) return -1;
        if (!eq) continue;
        size_t key = (size_t)(eq - *e);
        int seen = 0;
        for (char **p = environ; p < e && !seen; p++) seen = strncmp(*p, *e, key + 1) == 0;
        if (seen) continue;
        if (ctype && key == 8 && strncmp(*e, "LC_CTYPE", 8) == 0) {
            ctype_set = 1;
            if (buf_add(env, "LC_CTYPE=", 9) != 0 || buf_add(env, ctype, strlen(ctype) + 1) != 0) return -1;
        } else if (buf_add(env, *e, strlen(*e) + 1) != 0) {
            return -1;
        }
    }
    if (ctype && !ctype_set && (buf_add(env, "LC_CTYPE=", 9) != 0 || buf_add(env, ctype, strlen(ctype) + 1) != 0))
        return -1;
    return 0;
}

/* Leave the socket open (blocking, inherited) for the Python client, and say how far we got. */
static void hand_over(int sock, const char *fmt, ...) {
    char state[128], fd[16];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(state, sizeof state, fmt, ap);
    va_end(ap);
    int flags = fcntl(sock, F_GETFL);
    if (n < 0 || (size_t)n >= sizeof state || flags < 0 || fcntl(sock, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
        fcntl(sock, F_SETFD, 0) != 0)
        fail("cannot hand the daemon connection on to the runtime: %s", strerror(errno));
    snprintf(fd, sizeof fd, "%d", sock);
    if (setenv("MULTIPLANE_CLIENT_FD", fd, 1) != 0 || setenv("MULTIPLANE_CLIENT_STATE", state, 1) != 0)
        fail("cannot hand the daemon connection on to the runtime: %s", strerror(errno));
}

/* After b"A": read b"R", status, stdout, stderr; write them and exit. Returns when it cannot. */
static void answer(int sock) {
    int64_t deadline = now_ns() + ANSWER_TIMEOUT_MS * MS;
    struct buf ans = {0};
    size_t need = 9; /* b"R", status, stdout's length */
    int stage = 0;
    for (;;) {
        if (ans.len == need && stage == 0) {
            size_t n = be32(ans.data + 5);
            if (ans.data[0] != 'R' || n > MAX_FIELD) break;
            need += n + 4;
            stage = 1;
        } else if (ans.len == need && stage == 1) {
            size_t n = be32(ans.data + need - 4);
            if (n > MAX_FIELD) break;
            need += n;
            stage = 2;
        } else if (ans.len == need) {
            size_t out = be32(ans.data + 5), err = be32(ans.data + 9 + out);
            close(sock);
            if (err) (void)write_all(2, ans.data + 9 + out + 4, err); /* as client.py: stdout is what counts */
            if (write_all(1, ans.data + 9, out) != 0) exit(1);
            exit((int)(be32(ans.data + 1) & 0xff));
        } else {
            if (buf_reserve(&ans, need - ans.len) != 0) break;
            ssize_t got = recv_by(sock, ans.data + ans.len, need - ans.len, 0, deadline);
            if (got <= 0) break;
            ans.len += (size_t)got;
        }
    }
    if (ans.len == 0) {
        hand_over(sock, "accepted %lld", (long long)deadline);
    } else {
        int prefix = holding(ans.data, ans.len, -1, 0);
        if (prefix < 0) fail("cannot hand the daemon's answer on to the runtime: %s", strerror(errno));
        hand_over(sock, "accepted %lld %d", (long long)deadline, prefix);
    }
    free(ans.data);
}

/* The first hop (see above). Returns when Python is to run, with fd 0 and the environment set. */
static void first_hop(int argc, char **argv) {
    const char *command = getenv("CNI_COMMAND"), *mode = getenv("MULTIPLANE_DAEMON");
    if (!command || !*command || strcmp(command, "VERSION") == 0 || argc != 1) return;
    const char *slash = strrchr(argv[0], '/'), *name = slash ? slash + 1 : argv[0];
    size_t known = 0;
    while (personalities[known] && strcmp(personalities[known], name) != 0) known++;
    if (!personalities[known] || (mode && strcmp(mode, "off") == 0)) return;
    if (fcntl(0, F_GETFD) < 0 || isatty(0)) return; /* Python reads no stdin then */

    struct buf in = {0}, req = {0}, env = {0};
    int more = read_stdin(&in);
    if (more < 0 && in.len == 0) { /* stdin untouched: Python meets the same error */
        free(in.data);
        return;
    }
    if (more != 0 || memmem(in.data ? (void *)in.data : (void *)"", in.len, "daemonSocket", 12)) {
        give_back(&in, more > 0);
        free(in.data);
        return;
    }
    const char *path = getenv("MULTIPLANE_SOCKET");
    int sock = connect_daemon(path && *path ? path : DEFAULT_SOCKET);
    int built = sock >= 0 && environ_block(&env) == 0;
    built = built && buf_add(&req, WIRE_MAGIC, 4) == 0 && buf_field(&req, name, strlen(name)) == 0 &&
            buf_field(&req, env.data, env.len) == 0 && buf_field(&req, in.data, in.len) == 0;
    free(env.data);
    if (!built) { /* no connection (or a request over the limits): the Python client tries itself */
        if (sock >= 0) close(sock);
        free(req.data);
        give_back(&in, 0);
        free(in.data);
        return;
    }
    int err = send_all(sock, req.data, req.len, now_ns() + PICKUP_TIMEOUT_MS * MS);
    free(req.data);
    unsigned char first = 0;
    int64_t deadline = now_ns() + PICKUP_TIMEOUT_MS * MS;
    if (err) {
        hand_over(sock, "unsent %d", err);
    } else if (recv_by(sock, &first, 1, MSG_PEEK, deadline) != 1 || first != 'A' ||
               recv(sock, &first, 1, MSG_DONTWAIT) != 1) {
        hand_over(sock, "sent %lld", (long long)deadline);
    } else {
        answer(sock); /* exits unless it hands over */
    }
    give_back(&in, 0);
    free(in.data);
}

/* ---- --exec-in-root: a plugin of the host, started by the node daemon --------------------- */

static int in_root_failed(const char *step, const char *what) {
    fprintf(stderr, "multiplane: exec-in-root: %s %s: %s\n", step, what, strerror(errno));
    return 127;
}

/* `launcher --exec-in-root ROOT PATH`: chroot(ROOT), chdir("/"), execv(PATH, {PATH, NULL}),
 * the environment as given. The daemon (delegate/exec.py) runs in a container with the host's
 * "/" at ROOT; a plugin run this way finds the host's loader and libraries, as the runtime's
 * own exec would. Static, so it runs in any container. Nothing is opened, so the plugin gets
 * exactly the descriptors we got. On failure one line on stderr, prefixed
 * "multiplane: exec-in-root: ", and exit status 127 (exec.py reports it naming ROOT and PATH). */
static int exec_in_root(int argc, char **argv) {
    if (argc != 4) {
        fputs("multiplane: exec-in-root: usage: launcher --exec-in-root ROOT PATH\n", stderr);
        return 127;
    }
    const char *root = argv[2], *path = argv[3];
    if (chroot(root) != 0) return in_root_failed("chroot", root);
    if (chdir("/") != 0) return in_root_failed("chdir / in", root);
    char *args[] = {argv[3], NULL};
    execv(path, args);
    return in_root_failed("exec", path);
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--exec-in-root") == 0) return exec_in_root(argc, argv);
    first_hop(argc, argv);
    char self[PATH_MAX];
    static const char deleted[] = " (deleted)";
    /* Read the file this process runs through /proc/self/exe itself, not through its name: an
     * install that renames a new launcher over this one between our exec and this point leaves
     * the name pointing at another file, and the link reading "<path> (deleted)". */
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? readlink("/proc/self/exe", self, sizeof self - 1) : -1;
    size_t cut = sizeof deleted - 1;
    if (n > 0) {
        self[n] = '\0';
        if ((size_t)n > cut && strcmp(self + n - cut, deleted) == 0) self[n - cut] = '\0';
    } else if (argc > 0 && strchr(argv[0], '/') && realpath(argv[0], self)) {
        /* no /proc: the path we were started by */
        if (fd >= 0) close(fd);
        fd = open(self, O_RDONLY | O_CLOEXEC);
    } else {
        fail("cannot find this program's own file: /proc is not mounted and argv[0] has no directory");
    }
    if (fd < 0) fail("cannot read %s: %s", self, strerror(errno));
    struct stat st;
    unsigned char trailer[TRAILER_SIZE];
    if (fstat(fd, &st) == 0 && st.st_size > TRAILER_SIZE &&
        pread(fd, trailer, TRAILER_SIZE, st.st_size - TRAILER_SIZE) == TRAILER_SIZE &&
        memcmp(trailer, MAGIC, 8) == 0) {
        self_contained(fd, trailer, argc, argv);
    }
    close(fd);
    *strrchr(self, '/') = '\0';
    installed(self[0] ? self : "/", argc, argv);
    return 1;
}
