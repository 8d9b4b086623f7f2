/* CPU: run-queue latency (wakeup -> running) as a log2 histogram in microseconds, and on-CPU time per process
 * (tgid + comm) and cgroup, from the sched tracepoints only. MAX_PIDS and MAX_TASKS come from the loader. */
#include "augur.h"
#include "cpu.h"

#define TASK_REPORT_MASK 0xff /* prev_state without the "preempted" report bit */

BPF_HASH(runq_since, u32, u64, MAX_PIDS);
BPF_ARRAY(runq_hist0, struct hist, 1);
BPF_ARRAY(runq_hist1, struct hist, 1);
BPF_PERCPU_ARRAY(oncpu_since, u64, 1);
BPF_HASH(oncpu0, struct oncpu_key, u64, MAX_TASKS);
BPF_HASH(oncpu1, struct oncpu_key, u64, MAX_TASKS);

static __always_inline void mark_runnable(u32 pid)
{
    if (pid == 0)
        return;
    u64 now = bpf_ktime_get_ns();
    if (runq_since.update(&pid, &now))  /* full: this wait will not be measured */
        augur_count_unaggregated(1);
}

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    mark_runnable(args->pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    mark_runnable(args->pid);
    return 0;
}

static __always_inline void account_oncpu(u64 now)
{
    u32 zero = 0;
    u64 *since = oncpu_since.lookup(&zero);
    if (!since)
        return;
    if (*since) {
        u64 delta = now - *since;
        struct oncpu_key key = {};
        key.tgid = bpf_get_current_pid_tgid() >> 32; /* current is still the task switching out */
        key.cgroup_id = bpf_get_current_cgroup_id();
        bpf_get_current_comm(&key.comm, sizeof(key.comm));
        if (key.tgid != 0) {
            u64 init = 0, *total;
            /* bcc rewrites map calls only as whole statements: no map call inside ?: */
            if (augur_slot())
                total = oncpu1.lookup_or_try_init(&key, &init);
            else
                total = oncpu0.lookup_or_try_init(&key, &init);
            if (total)
                __sync_fetch_and_add(total, delta);
            else
                augur_count_unaggregated(1);
        }
    }
    *since = now;
}

static __always_inline void account_runq(u32 next_pid, u64 now)
{
    u64 *since = runq_since.lookup(&next_pid);
    if (!since)
        return;
    u64 delta_us = (now - *since) / 1000;
    runq_since.delete(&next_pid);
    u32 zero = 0;
    struct hist *h;
    if (augur_slot())
        h = runq_hist1.lookup(&zero);
    else
        h = runq_hist0.lookup(&zero);
    augur_hist_add(h, delta_us);
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    u64 now = bpf_ktime_get_ns();
    account_oncpu(now);
    if ((args->prev_state & TASK_REPORT_MASK) == 0) /* preempted while runnable: back on the run queue */
        mark_runnable(args->prev_pid);
    account_runq(args->next_pid, now);
    return 0;
}
