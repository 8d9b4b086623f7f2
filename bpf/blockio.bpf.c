/* Block I/O: latency (issue -> complete) as a log2 histogram in microseconds, ops and bytes, per device and
 * direction, from block:block_rq_issue and block:block_rq_complete. */
#include "augur.h"
#include "blockio.h"

BPF_HASH(inflight, struct rq_key, struct rq_start, MAX_PIDS);
BPF_HASH(io0, struct io_key, struct io_stats, MAX_KEYS);
BPF_HASH(io1, struct io_key, struct io_stats, MAX_KEYS);

TRACEPOINT_PROBE(block, block_rq_issue)
{
    struct rq_key key = {.dev = args->dev, .sector = args->sector};
    struct rq_start start = {.ts = bpf_ktime_get_ns(), .bytes = args->bytes};
    char op = args->rwbs[0];
    start.write = (op == 'W' || (op == 'F' && args->rwbs[1] == 'W')) ? 1 : 0;
    if ((op == 'R' || start.write) && inflight.update(&key, &start))  /* full: its completion will not be seen */
        augur_count_unaggregated(1);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct rq_key key = {.dev = args->dev, .sector = args->sector};
    struct rq_start *start = inflight.lookup(&key);
    if (!start)
        return 0;
    u64 delta_us = (bpf_ktime_get_ns() - start->ts) / 1000;
    struct io_key ik = {.dev = args->dev, .write = start->write};
    u64 bytes = start->bytes;
    inflight.delete(&key);
    struct io_stats zero = {}, *st;
    if (augur_slot())
        st = io1.lookup_or_try_init(&ik, &zero);
    else
        st = io0.lookup_or_try_init(&ik, &zero);
    if (!st) {
        augur_count_unaggregated(1);
        return 0;
    }
    augur_hist_add(&st->latency_us, delta_us);
    __sync_fetch_and_add(&st->ops, 1);
    __sync_fetch_and_add(&st->bytes, bytes);
    return 0;
}
