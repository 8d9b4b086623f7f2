/* Shared by every Augur eBPF program (bcc C).
 *
 * Double-buffered aggregation: each program keeps two copies of its aggregation maps (NAME0, NAME1); handlers
 * write to the copy selected by `active_slot`, and user space flips the slot, waits for in-flight handlers, then
 * reads and clears the idle copy. No count is lost between a read and a delete.
 */
#ifndef AUGUR_H
#define AUGUR_H

#define HIST_SLOTS 28 /* log2 buckets: bucket i holds [2^i, 2^(i+1)); 2^28 us ~ 4.5 min */

struct hist {
    u64 slots[HIST_SLOTS];
    u64 sum;
};

BPF_ARRAY(active_slot, u32, 1);

static __always_inline u32 augur_slot(void)
{
    u32 zero = 0;
    u32 *slot = active_slot.lookup(&zero);
    return slot ? *slot : 0;
}

static __always_inline u32 augur_log2_slot(u64 v)
{
    u32 s = v ? bpf_log2l(v) : 0;
    return s < HIST_SLOTS ? s : HIST_SLOTS - 1;
}

/* v counted n times (n > 1: a sampled value standing for n) */
static __always_inline void augur_hist_add_n(struct hist *h, u64 v, u64 n)
{
    if (!h)
        return;
    u32 s = augur_log2_slot(v);
    __sync_fetch_and_add(&h->slots[s], n);
    __sync_fetch_and_add(&h->sum, v * n);
}

static __always_inline void augur_hist_add(struct hist *h, u64 v)
{
    augur_hist_add_n(h, v, 1);
}

/* Increments lost_events[0] when a ring buffer is full, so user space can publish what it did not see. */
BPF_ARRAY(lost_events, u64, 1);

static __always_inline void augur_count_lost(void)
{
    u32 zero = 0;
    u64 *n = lost_events.lookup(&zero);
    if (n)
        __sync_fetch_and_add(n, 1);
}

/* Adds n to unaggregated[0] when an observation could not be kept because a map was full: an aggregation map at
 * its key bound (collect.max-keys), or a table of starts awaiting their end (collect.max-pids). User space
 * publishes it as augur.collector.unaggregated, so what is missing from the samples is counted, not silent. */
BPF_ARRAY(unaggregated, u64, 1);

static __always_inline void augur_count_unaggregated(u64 n)
{
    u32 zero = 0;
    u64 *total = unaggregated.lookup(&zero);
    if (total)
        __sync_fetch_and_add(total, n);
}

#endif
