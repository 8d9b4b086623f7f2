/* HTTP/1.x server requests, observed at the sockets with no change to the application.
 *
 * Three programs are linked to the root of the cgroup v2 hierarchy, or to the groups of collect.http-cgroups (then
 * no other socket's packet runs them):
 * - sock_ops marks each connection a server accepts (PASSIVE_ESTABLISHED) with a socket-local storage;
 * - cgroup_skb ingress: on a marked socket, a received segment whose payload starts with an HTTP method opens a
 *   request in that storage;
 * - cgroup_skb egress: on a marked socket with a request open, a sent segment starting with "HTTP/1." closes it
 *   with its status.
 * sock_ops also marks the server's local port in an array. A packet of an unmarked port costs one array lookup
 * (inlined by the verifier), one of a marked port that is not an accepted socket a socket-storage lookup, and
 * nothing else; and unlike syscall tracepoints
 * nothing runs for syscalls that are not network I/O. The latency runs from the request's arrival at the
 * server's socket to its response leaving it (queueing before the server read it included). Only the method, the
 * path (cut at '?', digit runs folded to one '0') and the status class are kept. Connections accepted before the
 * collector started are not seen.
 *
 * Sampling under load: while a CPU opens at most EXACT_PER_WINDOW requests per 10 ms window, every request is
 * timed and counted once; beyond that, one request in SAMPLE_EVERY (drawn at random) is timed and counted
 * SAMPLE_EVERY times; the others are only counted, per CPU, as untimed. Timing a request hands its storage from
 * the CPU that received it to the one that answers it (about 100 ns a request, the 1% budget at 200k requests/s
 * on 2 cores); a request not timed costs the lookups that find it, and its storage line stays unwritten.
 *
 * The packet programs only read: both always return 1 (let the packet through). */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include "augur.h"
#include "http.h"

BPF_SK_STORAGE(server_socks, struct inflight_req);          /* accepted sockets: the request awaiting reply */
/* local ports that accepted a connection since the collector started, one bit per port (8 KiB): a packet of any
 * other port is let through without the socket-storage lookup, which is most of what a client's packets cost (an
 * array lookup is inlined by the verifier; the storage lookup is a helper call). A port stays marked after its
 * server stops: its packets then only take the lookup again. */
BPF_ARRAY(server_ports, u64, 1024);
/* per-CPU histograms (user space sums the CPUs): no cache line shared between CPUs per request (the adds stay
 * atomic, as a softirq may interrupt a program on the same CPU); entries are allocated when a key first appears,
 * not for MAX_KEYS x CPUs up front */
BPF_F_TABLE("percpu_hash", struct req_key, struct hist, http0, MAX_KEYS, BPF_F_NO_PREALLOC);
BPF_F_TABLE("percpu_hash", struct req_key, struct hist, http1, MAX_KEYS, BPF_F_NO_PREALLOC);
/* requests opened per CPU (see "Sampling"); RATE_WINDOW_NS, EXACT_PER_WINDOW and SAMPLE_EVERY are set by
 * collectors/http.py from the collect.http-* options */
BPF_PERCPU_ARRAY(request_rates, struct request_rate, 1);

#define PASS 1
#define MIN_REQUEST 14  /* "GET / HTTP/1.0" */
#define MIN_RESPONSE 12 /* "HTTP/1.1 200" */
/* Offsets are from the network header, where a cgroup_skb program's skb->data points; bpf_skb_load_bytes reads
 * paged data too (a TCP payload is usually not in the skb's linear part, which is all that the _relative variant
 * reads) */
#define LOAD(skb, off, dst, n) bpf_skb_load_bytes(skb, off, dst, n)
#define MAX_HEADERS 120  /* IPv4 with options (60) + TCP with options (60): the largest offset a header read uses */

/* n (a constant) bytes of the headers at off: read from the packet's linear part directly where they lie in it
 * (the IP and TCP headers normally do), else through the helper; each segment of an accepted socket took three
 * helper calls for its headers before. */
static __always_inline int header_bytes(struct __sk_buff *skb, u32 off, void *dst, const u32 n)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    if (off <= MAX_HEADERS) {
        void *p = data + off;
        if (p + n <= end) {
            __builtin_memcpy(dst, p, n);
            return 0;
        }
    }
    return LOAD(skb, off, dst, n);
}

/* Where the TCP payload of this segment starts (from the network header) and the local port of its socket;
 * 0 when it is not TCP over IPv4/IPv6 or carries less than min_len bytes. */
static __always_inline u32 tcp_payload(struct __sk_buff *skb, bool ingress, u32 min_len, u16 *port)
{
    u32 off;
    u8 proto;
    if (skb->len < 40 + min_len)  /* shorter than the smallest IPv4 + TCP headers and the payload: a pure ACK */
        return 0;
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        u8 ip[10];  /* version/IHL .. protocol */
        if (header_bytes(skb, 0, ip, sizeof(ip)))
            return 0;
        proto = ip[9];
        off = (ip[0] & 0x0f) * 4;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        if (header_bytes(skb, 6, &proto, 1))  /* extension headers are not followed: their segments are skipped */
            return 0;
        off = 40;
    } else {
        return 0;
    }
    if (proto != IPPROTO_TCP)
        return 0;
    struct {  /* the TCP header up to its data offset, read in one call */
        u16 ports[2];
        u8 seq_ack[8];
        u8 doff;
    } __attribute__((packed)) tcp;
    if (header_bytes(skb, off, &tcp, sizeof(tcp)))
        return 0;
    off += (tcp.doff >> 4) * 4;
    if (skb->len < off + min_len)
        return 0;
    *port = bpf_ntohs(ingress ? tcp.ports[1] : tcp.ports[0]);
    return off;
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

int http_sockops(struct bpf_sock_ops *skops)
{
    if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
        return 1;
    struct bpf_sock *sk = skops->sk;  /* read once: the verifier tracks the NULL check on this copy */
    if (sk)
        server_socks.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    u32 port = skops->local_port & 0xffff;
    u32 word = port >> 6;
    u64 *ports = server_ports.lookup(&word);
    if (ports)
        __sync_fetch_and_or(ports, 1ULL << (port & 63));
    return 1;
}

/* The storage of an accepted socket, or NULL for any other packet. */
static __always_inline struct inflight_req *server_sock(struct __sk_buff *skb)
{
    u32 port = skb->local_port & 0xffff;
    u32 word = port >> 6;
    u64 *ports = server_ports.lookup(&word);
    if (!ports || !(*ports & (1ULL << (port & 63))))
        return 0;
    struct bpf_sock *sk = skb->sk;
    if (!sk)
        return 0;
    sk = bpf_sk_fullsock(sk);
    if (!sk)
        return 0;
    return server_socks.sk_storage_get(sk, 0, 0);
}

/* How many requests this one will stand for: 1 (timed, counted once), SAMPLE_EVERY (sampled), or 0 (not timed).
 * The counts are per CPU and plain adds: ingress runs in softirq, which does not nest on a CPU. */
static __always_inline u32 request_weight(void)
{
    if (SAMPLE_EVERY <= 1)
        return 1;
    u32 zero = 0;
    struct request_rate *r = request_rates.lookup(&zero);
    if (!r)
        return 1;
    u64 now = bpf_ktime_get_coarse_ns();
    if (now - r->window_start >= RATE_WINDOW_NS) {
        r->window_start = now;
        r->opened = 0;
    }
    if (++r->opened <= EXACT_PER_WINDOW)
        return 1;
    if (bpf_get_prandom_u32() % SAMPLE_EVERY == 0)
        return SAMPLE_EVERY;
    r->untimed++;
    return 0;
}

int http_ingress(struct __sk_buff *skb)
{
    struct inflight_req *req = server_sock(skb);
    if (!req)
        return PASS;
    u16 port;
    u32 off = tcp_payload(skb, true, MIN_REQUEST, &port);
    if (!off)
        return PASS;
    char head[8];
    if (LOAD(skb, off, head, sizeof(head)))
        return PASS;
    u32 skip = 0;
    u8 method = parse_method(head, &skip);
    if (method == M_OTHER)
        return PASS;
    u32 weight = request_weight();
    if (!weight) {
        if (req->ts)  /* an earlier request left unanswered must not take this one's response */
            req->ts = 0;
        return PASS;
    }
    /* the path: at most ROUTE_LEN bytes, fewer when the segment ends sooner (a bare "GET / HTTP/1.0") */
    char path[ROUTE_LEN] = {};
    u32 left = skb->len - off - skip;
    if (left >= ROUTE_LEN) {
        if (LOAD(skb, off + skip, path, ROUTE_LEN))
            return PASS;
    } else if (left > 0) {  /* the verifier needs the length's bounds in the expression: 1..ROUTE_LEN */
        if (LOAD(skb, off + skip, path, ((left - 1) & (ROUTE_LEN - 1)) + 1))
            return PASS;
    }
    __builtin_memset(req->key.route, 0, ROUTE_LEN);
    u32 out = 0;
    bool in_digits = false;
#pragma unroll
    for (int i = 0; i < ROUTE_LEN - 1; i++) {  /* unrolled, with an exit at the path's end */
        char c = path[i];
        if (c == ' ' || c == '?' || c == '\r' || c == '\n' || c == 0)
            break;
        if (c >= '0' && c <= '9') {
            if (in_digits)
                continue;
            in_digits = true;
            c = '0';
        } else {
            in_digits = false;
        }
        req->key.route[out & (ROUTE_LEN - 1)] = c;
        out++;
    }
    req->key.method = method;
    if (!req->key.cgroup_id) {  /* the socket's own: set by its first request */
        req->key.cgroup_id = bpf_skb_cgroup_id(skb);
        req->key.port = port;
    }
    req->weight = weight;
    req->ts = bpf_ktime_get_ns();
    return PASS;
}

int http_egress(struct __sk_buff *skb)
{
    struct inflight_req *req = server_sock(skb);
    if (!req || !req->ts)
        return PASS;
    u16 port;
    u32 off = tcp_payload(skb, false, MIN_RESPONSE, &port);
    if (!off)
        return PASS;
    char head[MIN_RESPONSE];
    if (LOAD(skb, off, head, sizeof(head)))
        return PASS;
    if (!(head[0] == 'H' && head[1] == 'T' && head[2] == 'T' && head[3] == 'P' && head[4] == '/' && head[5] == '1'))
        return PASS;
    u64 us = (bpf_ktime_get_ns() - req->ts) / 1000;
    req->ts = 0;
    struct req_key *k = &req->key;
    k->status_class = (head[9] >= '1' && head[9] <= '5') ? head[9] - '0' : 0;
    struct hist init = {}, *h;
    if (augur_slot())
        h = http1.lookup_or_try_init(k, &init);
    else
        h = http0.lookup_or_try_init(k, &init);
    if (h)
        augur_hist_add_n(h, us, req->weight);  /* this CPU's copy */
    else
        augur_count_unaggregated(req->weight);  /* the key map is full: the requests it stands for */
    return PASS;
}
