/* CPU collector: structs shared by bpf/cpu.bpf.c and collectors/cpu.py (keep in step: tests/test_bpf_parity.py). */
#ifndef AUGUR_CPU_H
#define AUGUR_CPU_H

#define TASK_COMM_LEN 16

struct oncpu_key {
    u32 tgid;
    u32 pad;
    u64 cgroup_id;
    char comm[TASK_COMM_LEN];
};

#endif
