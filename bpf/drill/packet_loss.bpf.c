/* Packet loss for the fault drill (augur/fault_drill.py), not a collector: attached as generic XDP to an interface
 * (lo), it drops LOSS_PER_MILLE of the IPv4 TCP packets to or from PORT, so the kernel's own TCP retransmits them
 * as it would on a lossy link. This kernel has neither netem nor netfilter to do it. */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>

int drop_some(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl < 5)
        return XDP_PASS;
    struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
    if ((void *)(tcp + 1) > end)
        return XDP_PASS;
    if (tcp->source != htons(PORT) && tcp->dest != htons(PORT))
        return XDP_PASS;
    return bpf_get_prandom_u32() % 1000 < LOSS_PER_MILLE ? XDP_DROP : XDP_PASS;
}
