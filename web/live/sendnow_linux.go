package live

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxUnsent bounds the bytes a connection's socket keeps that the client's window has
// not let out yet (TCP_NOTSENT_LOWAT): past it a send takes nothing (EAGAIN) and the
// frames wait in the connection's own queue, where MaxBehind and MaxQueueBytes see
// them. Without it the kernel's send buffer, autotuned up to 4 MiB, took a client
// that stopped reading (its window shut) everything for minutes at a few events a
// second, and it stayed connected and counted as a viewer all that time. 128 KiB is
// a second of a busy stream's frames many times over for a client that reads.
const maxUnsent = 128 << 10

// limitUnsent sets the socket fd's TCP_NOTSENT_LOWAT to maxUnsent (best effort: a
// kernel without it keeps its own bound).
func limitUnsent(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, maxUnsent)
}

// rawSends: the shards send with sendNow on the socket's descriptor.
const rawSends = true

// sendNow is one send(2) of buf on fd that never waits (the socket is non-blocking
// and MSG_DONTWAIT says so again), so it is a raw syscall: the scheduler need not
// hand the P to another thread meanwhile (that hand-over and sysmon's watching of
// syscalls cost more than the send when the cores are busy). Going around the poller,
// it ignores the write deadline: the writer goroutine's deadlines (and the HTTP
// server's, still set at the upgrade) are for writes that wait. The caller holds
// b.mu. It returns how much went out, and the error other than EAGAIN, if any.
func sendNow(fd int, buf []byte) (sent int, err syscall.Errno) {
	for sent < len(buf) {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&buf[sent])), uintptr(len(buf)-sent),
			syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			sent += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return sent, 0
		default:
			return sent, errno
		}
	}
	return sent, 0
}
