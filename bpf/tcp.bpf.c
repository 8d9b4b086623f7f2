/* TCP: connections opened (active/passive), closed with their lifetime, failed handshakes and retransmitted
 * segments, per service port and direction, from sock:inet_sock_set_state and tcp:tcp_retransmit_skb.
 * Ports above EPHEMERAL_MIN are folded to 0 so that cardinality stays bounded. */
#include "augur.h"
#include "tcp.h"

#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define EPHEMERAL_MIN 32768

BPF_HASH(births, u64, struct conn_birth, MAX_PIDS);
BPF_HASH(handshakes, u64, struct conn_key, MAX_PIDS);
BPF_HASH(tcp0, struct conn_key, struct tcp_stats, MAX_KEYS);
BPF_HASH(tcp1, struct conn_key, struct tcp_stats, MAX_KEYS);

static __always_inline u16 fold_port(u16 port)
{
    return port >= EPHEMERAL_MIN ? 0 : port;
}

static __always_inline struct tcp_stats *stats_for(struct conn_key *key)
{
    struct tcp_stats zero = {}, *st;
    if (augur_slot())
        st = tcp1.lookup_or_try_init(key, &zero);
    else
        st = tcp0.lookup_or_try_init(key, &zero);
    if (!st)  /* full: the caller's count is counted here instead */
        augur_count_unaggregated(1);
    return st;
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP)
        return 0;
    /* copy fields to locals: choosing a field with ?: makes pointer arithmetic on ctx, which the verifier rejects */
    u64 sk = (u64)args->skaddr;
    int oldstate = args->oldstate, newstate = args->newstate;
    u16 sport = args->sport, dport = args->dport;
    if (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV) {
        struct conn_key hk = {};
        hk.direction = newstate == TCP_SYN_SENT ? DIR_ACTIVE : DIR_PASSIVE;
        hk.port = fold_port(newstate == TCP_SYN_SENT ? dport : sport);
        if (handshakes.update(&sk, &hk))  /* full: its failure, if it fails, will not be counted */
            augur_count_unaggregated(1);
        return 0;
    }
    if (newstate == TCP_ESTABLISHED && (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)) {
        struct conn_birth b = {.ts = bpf_ktime_get_ns()};
        b.key.direction = oldstate == TCP_SYN_SENT ? DIR_ACTIVE : DIR_PASSIVE;
        b.key.port = fold_port(oldstate == TCP_SYN_SENT ? dport : sport);
        handshakes.delete(&sk);
        if (births.update(&sk, &b))  /* full: its close will not be counted */
            augur_count_unaggregated(1);
        struct tcp_stats *st = stats_for(&b.key);
        if (st)
            __sync_fetch_and_add(&st->opened, 1);
        return 0;
    }
    if (newstate == TCP_CLOSE) {
        struct conn_birth *b = births.lookup(&sk);
        if (b) {
            struct conn_key key = b->key;
            u64 ms = (bpf_ktime_get_ns() - b->ts) / 1000000;
            births.delete(&sk);
            struct tcp_stats *st = stats_for(&key);
            if (st) {
                __sync_fetch_and_add(&st->closed, 1);
                augur_hist_add(&st->duration_ms, ms);
            }
            return 0;
        }
        struct conn_key *hk = handshakes.lookup(&sk);
        if (hk) {
            struct conn_key key = *hk;
            handshakes.delete(&sk);
            struct tcp_stats *st = stats_for(&key);
            if (st)
                __sync_fetch_and_add(&st->failed, 1);
        }
    }
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    u64 sk = (u64)args->skaddr;
    u16 sport = args->sport, dport = args->dport;
    struct conn_key key = {.direction = DIR_UNKNOWN};
    struct conn_birth *b = births.lookup(&sk);
    if (b)
        key = b->key;
    else
        key.port = fold_port(sport < dport ? sport : dport);
    struct tcp_stats *st = stats_for(&key);
    if (st)
        __sync_fetch_and_add(&st->retransmits, 1);
    return 0;
}
