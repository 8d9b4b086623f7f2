/* HTTP collector: structs shared by bpf/http.bpf.c and collectors/http.py. */
#ifndef AUGUR_HTTP_H
#define AUGUR_HTTP_H

#define ROUTE_LEN 32   /* the path is cut at '?', ' ' or this length (a power of two: used as a mask) */
#define COMM_LEN 16

enum http_method { M_OTHER = 0, M_GET, M_POST, M_PUT, M_DELETE, M_HEAD, M_PATCH, M_OPTIONS };

struct read_args {      /* a read in flight: where its bytes land */
    u64 buf;
    u32 fd;
    u32 pad;
};

struct inflight_req {   /* a request read, awaiting its response */
    u64 ts;
    u8 method;
    u8 pad[7];
    char route[ROUTE_LEN];
};

struct req_key {
    u64 cgroup_id;
    char comm[COMM_LEN];
    u8 method;
    u8 status_class;    /* 1..5 for 1xx..5xx, 0 unknown */
    u8 pad[6];
    char route[ROUTE_LEN];
};

#endif
