/* Block I/O collector: structs shared by bpf/blockio.bpf.c and collectors/blockio.py. */
#ifndef AUGUR_BLOCKIO_H
#define AUGUR_BLOCKIO_H

struct rq_key {
    u32 dev;
    u32 pad;
    u64 sector;
};

struct rq_start {
    u64 ts;
    u64 bytes;
    u8 write;
};

struct io_key {
    u32 dev;
    u32 write; /* 0 read, 1 write */
};

struct io_stats {
    struct hist latency_us;
    u64 ops;
    u64 bytes;
};

#endif
