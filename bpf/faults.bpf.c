/* Page faults: user-space page faults per cgroup, from exceptions:page_fault_user. */
#include "augur.h"

BPF_HASH(faults0, u64, u64, MAX_KEYS);
BPF_HASH(faults1, u64, u64, MAX_KEYS);

TRACEPOINT_PROBE(exceptions, page_fault_user)
{
    u64 cgroup = bpf_get_current_cgroup_id(), init = 0, *n;
    if (augur_slot())
        n = faults1.lookup_or_try_init(&cgroup, &init);
    else
        n = faults0.lookup_or_try_init(&cgroup, &init);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        augur_count_unaggregated(1);
    return 0;
}
