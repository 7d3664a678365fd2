package live

import (
	"syscall"
	"unsafe"
)

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
