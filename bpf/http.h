/* HTTP collector: structs shared by bpf/http.bpf.c and collectors/http.py. */
#ifndef AUGUR_HTTP_H
#define AUGUR_HTTP_H

#define ROUTE_LEN 32   /* the path is cut at '?', ' ' or this length (a power of two: used as a mask) */

enum http_method { M_OTHER = 0, M_GET, M_POST, M_PUT, M_DELETE, M_HEAD, M_PATCH, M_OPTIONS };

struct req_key {
    u64 cgroup_id;      /* the server socket's cgroup v2 id */
    u16 port;           /* the server's local port (user space names the process listening on it) */
    u8 method;
    u8 status_class;    /* 1..5 for 1xx..5xx, 0 unknown */
    u8 pad[4];
    char route[ROUTE_LEN];
};

struct inflight_req {   /* per accepted socket: the request received and awaiting its response */
    u64 ts;             /* 0: none */
    struct req_key key; /* the histogram's key, filled as the request arrives (the status when it is answered),
                         * so the response's program looks its histogram up with it where it lies */
    u32 weight;         /* how many requests it stands for: 1, or SAMPLE_EVERY when sampled */
    u32 pad2;
};

struct request_rate {   /* per CPU: requests opened in the current window, and those not timed since loading */
    u64 window_start;   /* ns, coarse clock */
    u64 opened;
    u64 untimed;
};

#endif
