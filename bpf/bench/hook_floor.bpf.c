/* Two cgroup_skb programs that do nothing, linked to the cgroup v2 root by `augur bench overhead`: what the hook
 * alone costs a server (every packet of the host runs them), the floor of any collector that reads packets there,
 * as the `http` collector does. Not a collector. */
#include <uapi/linux/bpf.h>

int floor_ingress(struct __sk_buff *skb)
{
    return 1;
}

int floor_egress(struct __sk_buff *skb)
{
    return 1;
}
