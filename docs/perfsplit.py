#!/usr/bin/env python3
"""Split a `perf script` of the livecart server into its own work and the loopback
receive path run on its behalf (docs/BENCHMARKS.md, "Live channel", 2026-12-01 night).

    perf record -e cpu-clock -F 4999 -g -p $SERVER_PID -o perf.data -- sleep 5
    perf script -i perf.data | python3 docs/perfsplit.py

A sample is "rx" when any frame of its stack is the loopback receive path (softirq
net_rx_action / process_backlog / __netif_receive_skb* / ip_rcv / tcp_v4_rcv): the
receivers' TCP input and the wake-ups it does (rx_wake: sock_def_readable, epoll
callback, try_to_wake_up), which this kernel charges to the sending server. Everything
else is the server's own: go_user (leaf in Go code), tx_kernel (the send syscall's
transmit path, including ACKs to the server's own sockets processed at release_sock),
other_kernel (scheduler, timers, other syscalls)."""
import sys, collections
RX = {'net_rx_action', 'process_backlog', '__netif_receive_skb', '__netif_receive_skb_one_core',
      '__netif_receive_skb_core', 'tcp_v4_rcv', 'ip_rcv', 'ip_local_deliver'}
WAKE = {'sock_def_readable', 'ep_poll_callback', '__wake_up_common', 'try_to_wake_up', '__wake_up_sync_key'}
samples = []
cur = None
for line in sys.stdin:
    line = line.rstrip('\n')
    if not line:
        if cur is not None:
            samples.append(cur)
        cur = None
        continue
    if not line.startswith((' ', '\t')):
        cur = []
        continue
    parts = line.split(None, 2)
    if len(parts) >= 2 and cur is not None:
        sym = parts[1].split('+')[0]
        dso = parts[2] if len(parts) > 2 else ''
        cur.append((sym, 'kernel' in dso))
if cur:
    samples.append(cur)
c = collections.Counter()
for st in samples:
    syms = {s for s, _ in st}
    leaf_kernel = st[0][1] if st else False
    if syms & RX:
        c['rx'] += 1
        if syms & WAKE:
            c['rx_wake'] += 1
        if 'tcp_ack' in syms and not ({'tcp_data_queue', 'tcp_queue_rcv'} & syms):
            c['rx_ack_only'] += 1
    elif not leaf_kernel:
        c['go_user'] += 1
    elif syms & {'tcp_sendmsg', 'tcp_sendmsg_locked', '__sys_sendto', '__x64_sys_sendto', 'sock_sendmsg'}:
        c['tx_kernel'] += 1
    else:
        c['other_kernel'] += 1
n = len(samples)
print(f"samples {n}")
for k in ['go_user', 'tx_kernel', 'other_kernel', 'rx', 'rx_wake', 'rx_ack_only']:
    print(f"  {k:14s} {c[k]:7d} {100*c[k]/max(n,1):5.1f} %")
own = c['go_user'] + c['tx_kernel'] + c['other_kernel']
print(f"  own share {100*own/max(n,1):.1f} %, receive path {100*c['rx']/max(n,1):.1f} %")
