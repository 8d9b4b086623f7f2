/* TCP collector: structs shared by bpf/tcp.bpf.c and collectors/tcp.py. */
#ifndef AUGUR_TCP_H
#define AUGUR_TCP_H

#define DIR_ACTIVE 0   /* we connected out: port = remote port */
#define DIR_PASSIVE 1  /* we accepted: port = local port */
#define DIR_UNKNOWN 2  /* seen mid-life (e.g. retransmit on a socket older than the collector) */

struct conn_key {
    u16 port;
    u16 direction;
    u32 pad;
};

struct conn_birth {
    u64 ts;
    struct conn_key key;
};

struct tcp_stats {
    struct hist duration_ms;
    u64 opened;
    u64 closed;
    u64 failed;      /* closed without ever being established (refused, timed out, reset during handshake) */
    u64 retransmits;
};

#endif
