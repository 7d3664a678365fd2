#!/usr/bin/env python3
"""A finer split than perfsplit.py of a `perf script` of the live server (docs/BENCHMARKS.md,
Live channel, helper 1 session 20): the share of samples per bucket, the first rule that
matches a sample's stack wins; with a figure (the run's unprofiled server µs per delivery)
also µs per delivery.

    perf record -e cpu-clock -F 4999 -g -p $SERVER_PID -o perf.data -- sleep 5
    perf script -i perf.data | python3 docs/perfsplit-fine.py 3.84
"""
import sys, collections
samples=[]; cur=None
for line in sys.stdin:
    line=line.rstrip('\n')
    if not line:
        if cur is not None: samples.append(cur)
        cur=None; continue
    if not line.startswith((' ','\t')):
        cur=[]; continue
    p=line.split(None,2)
    if len(p)>=2 and cur is not None:
        cur.append((p[1].split('+')[0], 'kernel' in (p[2] if len(p)>2 else '')))
if cur: samples.append(cur)
RX={'net_rx_action','process_backlog','__netif_receive_skb_one_core','tcp_v4_rcv','ip_rcv','skb_defer_free_flush'}
def bucket(st):
    syms=[s for s,_ in st]; S=set(syms)
    if not st: return 'empty'
    if not st[0][1]: return 'go (leaf in Go)'
    if S & RX:
        if 'skb_defer_free_flush' in S: return 'rx: freeing the receivers\' consumed skbs (defer flush)'
        if 'sock_def_readable' in S: return 'rx: receiver wake-up (sock_def_readable/ep_poll_callback)'
        if '__inet_lookup_established' in S: return 'rx: socket lookup'
        if 'sk_reset_timer' in S or '__mod_timer' in S: return 'rx: delayed-ACK timer'
        if 'tcp_ack' in S: return 'rx: tcp_ack (receiver side)'
        return 'rx: other input (ip_rcv, tcp_rcv_established, queueing)'
    if 'tcp_sendmsg' in S or 'tcp_sendmsg_locked' in S:
        if 'tcp_event_new_data_sent' in S: return 'tx: RTO timer re-arm (tcp_event_new_data_sent)'
        if 'tcp_stream_alloc_skb' in S: return 'tx: skb alloc'
        if '__ip_queue_xmit' in S: return 'tx: ip/dev/loopback xmit'
        if '__tcp_transmit_skb' in S: return 'tx: tcp_transmit_skb (headers, clone)'
        return 'tx: tcp_sendmsg other (copy, lock, push)'
    if 'sock_sendmsg' in S or 'inet_sendmsg' in S or 'inet_send_prepare' in S: return 'tx: sock_sendmsg/inet_send_prepare (socket first touch)'
    if 'fget' in S or 'io_file_get_normal' in S: return 'file lookup (fget)'
    if S & {'io_submit_sqes','io_issue_sqe','__do_sys_io_uring_enter','io_uring_enter'}: return 'io_uring own'
    if 'runtime.sysmon' in S: return 'sysmon'
    if S & {'schedule','__schedule','finish_task_switch.isra.0','futex_wait','futex_wake','do_futex'}: return 'scheduler, futex'
    return 'other kernel'
c=collections.Counter(bucket(s) for s in samples)
n=len(samples); f=float(sys.argv[1]) if len(sys.argv)>1 else 0
print(f"samples {n}" + (f", µs per delivery scaled to {f}" if f else ""))
for k,v in sorted(c.items(), key=lambda x:-x[1]):
    print(f"  {100*v/n:5.1f} %" + (f"  {f*v/n:5.2f} µs" if f else "") + f"  {k}")
