/* HTTP/1.x server requests, observed from socket syscalls with no change to the application.
 *
 * Only sockets a process got from accept()/accept4() are watched (an LRU map of (tgid, fd)), so clients and
 * file/pipe I/O cost one failed lookup. On such a socket, a read()/recvfrom() whose bytes start with an HTTP
 * method opens a request; the next write()/sendto()/writev() starting with "HTTP/1." closes it with its status.
 * Only the method, the path (cut at '?', digit runs folded to one '0') and the status class are kept.
 *
 * The per-syscall tracepoints are used: measured here, they cost less than raw sys_enter/sys_exit, which run a
 * program for every syscall of the host. (fentry on the syscall bodies would be cheaper still, but fentry
 * programs are refused on the machines this was built on.) Sockets accepted before the collector started are
 * not seen until their server accepts again. */
#include "augur.h"
#include "http.h"

BPF_TABLE("lru_hash", u64, u8, accepted, MAX_PIDS);         /* tgid << 32 | fd of accepted sockets */
BPF_HASH(pending, u64, struct read_args, MAX_PIDS);          /* pid_tgid -> read in flight on an accepted socket */
BPF_HASH(requests, u64, struct inflight_req, MAX_PIDS);      /* tgid << 32 | fd -> request awaiting response */
BPF_HASH(http0, struct req_key, struct hist, MAX_KEYS);
BPF_HASH(http1, struct req_key, struct hist, MAX_KEYS);
BPF_ARRAY(overflow, u64, 1);                                 /* requests not aggregated: the key map was full */
BPF_PERCPU_ARRAY(scratch, struct req_key, 1);
/* built in a map value, not on the stack: clang turns a masked stack index into `fp | i`, which the verifier
 * rejects, but a map value pointer plus a bounded index is fine */
BPF_PERCPU_ARRAY(req_scratch, struct inflight_req, 1);

static __always_inline u64 fd_key(u64 pid_tgid, u32 fd)
{
    return (pid_tgid & 0xffffffff00000000ULL) | fd;
}

static __always_inline u8 parse_method(const char *p, u32 *skip)
{
    if (p[0] == 'G' && p[1] == 'E' && p[2] == 'T' && p[3] == ' ') { *skip = 4; return M_GET; }
    if (p[0] == 'P' && p[1] == 'O' && p[2] == 'S' && p[3] == 'T' && p[4] == ' ') { *skip = 5; return M_POST; }
    if (p[0] == 'P' && p[1] == 'U' && p[2] == 'T' && p[3] == ' ') { *skip = 4; return M_PUT; }
    if (p[0] == 'H' && p[1] == 'E' && p[2] == 'A' && p[3] == 'D' && p[4] == ' ') { *skip = 5; return M_HEAD; }
    if (p[0] == 'D' && p[1] == 'E' && p[2] == 'L' && p[3] == 'E' && p[4] == 'T' && p[5] == 'E' && p[6] == ' ') {
        *skip = 7; return M_DELETE; }
    if (p[0] == 'P' && p[1] == 'A' && p[2] == 'T' && p[3] == 'C' && p[4] == 'H' && p[5] == ' ') {
        *skip = 6; return M_PATCH; }
    if (p[0] == 'O' && p[1] == 'P' && p[2] == 'T' && p[3] == 'I' && p[4] == 'O' && p[5] == 'N' && p[6] == 'S' &&
        p[7] == ' ') { *skip = 8; return M_OPTIONS; }
    return M_OTHER;
}

static __always_inline void open_request(u64 id, u32 fd, u64 buf)
{
    char head[8] = {};
    if (bpf_probe_read_user(&head, sizeof(head), (void *)buf) != 0)
        return;
    u32 skip = 0;
    u8 method = parse_method(head, &skip);
    if (method == M_OTHER)
        return;
    char path[ROUTE_LEN] = {};
    if (bpf_probe_read_user(&path, sizeof(path), (void *)(buf + skip)) != 0)
        return;
    u32 zero = 0;
    struct inflight_req *req = req_scratch.lookup(&zero);
    if (!req)
        return;
    __builtin_memset(req, 0, sizeof(*req));
    req->ts = bpf_ktime_get_ns();
    req->method = method;
    u32 out = 0;
    bool in_digits = false, done = false;
#pragma unroll
    for (int i = 0; i < ROUTE_LEN - 1; i++) {
        char c = path[i];
        if (c == ' ' || c == '?' || c == '\r' || c == '\n' || c == 0)
            done = true;
        if (done)
            continue;
        if (c >= '0' && c <= '9') {
            if (in_digits)
                continue;
            in_digits = true;
            c = '0';
        } else {
            in_digits = false;
        }
        req->route[out & (ROUTE_LEN - 1)] = c;
        out++;
    }
    u64 key = fd_key(id, fd);
    requests.update(&key, req);
}

/* The request awaiting a response on this fd of the current process, if any (its map key in *key). */
static __always_inline struct inflight_req *awaiting_response(u32 fd, u64 *key)
{
    *key = fd_key(bpf_get_current_pid_tgid(), fd);
    return requests.lookup(key);
}

static __always_inline void close_request(u64 key, struct inflight_req *req, u64 buf)
{
    char head[12] = {};
    if (bpf_probe_read_user(&head, sizeof(head), (void *)buf) != 0)
        return;
    if (!(head[0] == 'H' && head[1] == 'T' && head[2] == 'T' && head[3] == 'P' && head[4] == '/' && head[5] == '1'))
        return;
    u32 zero = 0;
    struct req_key *k = scratch.lookup(&zero);
    if (!k)
        return;
    __builtin_memset(k, 0, sizeof(*k));
    k->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&k->comm, sizeof(k->comm));
    k->method = req->method;
    k->status_class = (head[9] >= '1' && head[9] <= '5') ? head[9] - '0' : 0;
    __builtin_memcpy(k->route, req->route, ROUTE_LEN);
    u64 us = (bpf_ktime_get_ns() - req->ts) / 1000;
    requests.delete(&key);
    struct hist init = {}, *h;
    if (augur_slot())
        h = http1.lookup_or_try_init(k, &init);
    else
        h = http0.lookup_or_try_init(k, &init);
    if (h) {
        augur_hist_add(h, us);
    } else {
        u64 *n = overflow.lookup(&zero);
        if (n)
            __sync_fetch_and_add(n, 1);
    }
}

/* A read on an accepted socket: remember where its bytes land (one failed lookup for any other fd). */
static __always_inline void on_read_enter(u32 fd, const void *buf)
{
    u64 id = bpf_get_current_pid_tgid();
    u64 key = fd_key(id, fd);
    if (!accepted.lookup(&key))
        return;
    struct read_args a = {.buf = (u64)buf, .fd = fd};
    pending.update(&id, &a);
}

static __always_inline void on_read_exit(long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct read_args *a = pending.lookup(&id);
    if (!a)
        return;
    struct read_args call = *a;
    pending.delete(&id);
    if (ret >= 14)
        open_request(id, call.fd, call.buf);
}

static __always_inline void on_write(u32 fd, const void *buf)
{
    u64 key;
    struct inflight_req *req = awaiting_response(fd, &key);
    if (req)
        close_request(key, req, (u64)buf);
}

static __always_inline void on_accept_exit(long ret)
{
    if (ret < 0)
        return;
    u64 key = fd_key(bpf_get_current_pid_tgid(), (u32)ret);
    u8 one = 1;
    accepted.update(&key, &one);
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept) { on_accept_exit(args->ret); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { on_accept_exit(args->ret); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_read) { on_read_enter(args->fd, args->buf); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { on_read_exit(args->ret); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom) { on_read_enter(args->fd, args->ubuf); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom) { on_read_exit(args->ret); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_write) { on_write(args->fd, args->buf); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_sendto) { on_write(args->fd, args->buff); return 0; }

TRACEPOINT_PROBE(syscalls, sys_enter_writev)
{
    u64 key;
    struct inflight_req *req = awaiting_response(args->fd, &key);
    if (!req)
        return 0;
    struct { u64 base; u64 len; } first = {}; /* the user's struct iovec: the first buffer holds the status line */
    if (bpf_probe_read_user(&first, sizeof(first), (const void *)args->vec) != 0)
        return 0;
    close_request(key, req, first.base);
    return 0;
}
