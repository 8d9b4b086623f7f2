/* CPU profile: on-CPU stacks sampled by a perf event (software cpu-clock, PROFILE_HZ times a second on every CPU,
 * attached by collectors/profile.py), counted per process, cgroup and stack. The stacks are part of the count's
 * key (their innermost KERNEL_FRAMES and USER_FRAMES return addresses), so two different stacks never share a
 * count, as they can in a stack-trace map's hash buckets. The idle task is not counted. */
#include <uapi/linux/bpf_perf_event.h>
#include "augur.h"
#include "profile.h"

BPF_PERCPU_ARRAY(scratch, struct profile_key, 1); /* a key of 512 bytes does not fit on the program's stack */
BPF_HASH(profile0, struct profile_key, u64, MAX_KEYS);
BPF_HASH(profile1, struct profile_key, u64, MAX_KEYS);

int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid == 0)
        return 0;
    u32 zero = 0;
    struct profile_key *key = scratch.lookup(&zero);
    if (!key)
        return 0;
    __builtin_memset(key, 0, sizeof(*key)); /* frames a shorter stack leaves unset must not differ between keys */
    key->tgid = tgid;
    key->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&key->comm, sizeof(key->comm));
    long n = bpf_get_stack(ctx, key->kernel, sizeof(key->kernel), 0); /* none when the sample is in user mode */
    key->kernel_depth = n > 0 ? (u64)n / 8 : 0;
    n = bpf_get_stack(ctx, key->user, sizeof(key->user), BPF_F_USER_STACK); /* none in a kernel thread */
    key->user_depth = n > 0 ? (u64)n / 8 : 0;
    u64 init = 0, *count;
    if (augur_slot())
        count = profile1.lookup_or_try_init(key, &init);
    else
        count = profile0.lookup_or_try_init(key, &init);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        augur_count_unaggregated(1);
    return 0;
}
