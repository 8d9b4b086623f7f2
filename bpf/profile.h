/* Profile collector: the key of bpf/profile.bpf.c's counts, decoded by collectors/profile.py (keep in step:
 * tests/test_bpf_parity.py). */
#ifndef AUGUR_PROFILE_H
#define AUGUR_PROFILE_H

#define TASK_COMM_LEN 16
#define KERNEL_FRAMES 20
#define USER_FRAMES 40 /* with the 32 bytes before the frames, 512 bytes: the largest key a hash map takes */

struct profile_key {
    u32 tgid;
    u16 kernel_depth; /* frames kept of each stack, innermost first; at its maximum, the stack may go deeper */
    u16 user_depth;
    u64 cgroup_id;
    char comm[TASK_COMM_LEN];
    u64 kernel[KERNEL_FRAMES];
    u64 user[USER_FRAMES];
};

#endif
