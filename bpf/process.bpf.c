/* Processes: exec (with parent, command, cgroup), exit of whole processes, and OOM kills, sent one by one through
 * a ring buffer (a full buffer is counted in lost_events). Parents come from sched_process_fork, so no task_struct
 * field is read. OOM_HAS_COMM is set by the loader when oom:mark_victim carries the victim's comm. */
#include "augur.h"
#include "process.h"

BPF_HASH(parents, u32, u32, MAX_PIDS);
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 child = args->child_pid, parent = args->parent_pid;
    parents.update(&child, &parent);
    return 0;
}

static __always_inline struct proc_event *reserve(u32 kind, u32 pid)
{
    struct proc_event *e = events.ringbuf_reserve(sizeof(struct proc_event));
    if (!e) {
        augur_count_lost();
        return 0;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->kind = kind;
    e->pid = pid;
    e->ppid = 0;
    e->pad = 0;
    e->cgroup_id = bpf_get_current_cgroup_id();
    e->filename[0] = 0;
    return e;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 pid = args->pid;
    struct proc_event *e = reserve(EV_EXEC, pid);
    if (!e)
        return 0;
    u32 *ppid = parents.lookup(&pid);
    e->ppid = ppid ? *ppid : 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    TP_DATA_LOC_READ_STR(&e->filename, filename, FILENAME_LEN);
    events.ringbuf_submit(e, 0);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 pid = id >> 32;
    u32 tid = (u32)id;
    parents.delete(&tid);
    if (pid != tid) /* a thread, not the whole process */
        return 0;
    struct proc_event *e = reserve(EV_EXIT, pid);
    if (!e)
        return 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    events.ringbuf_submit(e, 0);
    return 0;
}

TRACEPOINT_PROBE(oom, mark_victim)
{
    struct proc_event *e = reserve(EV_OOM_KILL, args->pid);
    if (!e)
        return 0;
#if OOM_HAS_COMM
    TP_DATA_LOC_READ_STR(&e->comm, comm, sizeof(e->comm));
#else
    e->comm[0] = 0;
#endif
    events.ringbuf_submit(e, 0);
    return 0;
}
