/* Process collector: the event record shared by bpf/process.bpf.c and collectors/process.py. */
#ifndef AUGUR_PROCESS_H
#define AUGUR_PROCESS_H

#define EV_EXEC 1
#define EV_EXIT 2
#define EV_OOM_KILL 3
#define FILENAME_LEN 128

struct proc_event {
    u64 ts_ns;
    u64 cgroup_id;
    u32 kind;
    u32 pid;
    u32 ppid;
    u32 pad;
    char comm[16];
    char filename[FILENAME_LEN];
};

#endif
