package live

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendRing is one writer shard's io_uring (raw io_uring_setup/io_uring_enter and the
// rings mmapped, no library): the shard's sends go to it as IORING_OP_SEND requests,
// many per io_uring_enter, instead of one sendto(2) each. On this PVM guest a syscall
// costs ~1.1 µs, so that entry is most of what a send costs (docs/BENCHMARKS.md).
// Every send carries MSG_DONTWAIT: a socket that would block completes at once with
// -EAGAIN instead of being armed for later, so each batch completes inside its
// io_uring_enter, while the shard still holds every connection's bc.mu.
//
// Only the shard's goroutine uses a ring. No IORING_SETUP_SINGLE_ISSUER: the
// goroutine moves between OS threads.
type sendRing struct {
	fd      int
	entries uint32

	sqHead, sqTail, sqMask *uint32
	sqArray                unsafe.Pointer // entries × uint32
	sqes                   unsafe.Pointer // entries × 64 bytes
	cqHead, cqTail, cqMask *uint32
	cqes                   unsafe.Pointer // × 16 bytes

	ringMem, sqeMem []byte // the mappings, for close
	broken          bool   // io_uring_enter failed: the shard sends with sendNow
	sqeFlags        uint8  // each SQE's flags; 0 (the tests set IOSQE_ASYNC)
}

// The kernel ABI (include/uapi/linux/io_uring.h).
const (
	ioringOffSQRing        = 0
	ioringOffSQEs          = 0x10000000
	ioringFeatSingleMap    = 1 << 0
	ioringSetupSubmitAll   = 1 << 7
	ioringSetupCoopTaskrun = 1 << 8
	ioringEnterGetEvents   = 1 << 0
	ioSQEAsync             = 1 << 4 // IOSQE_ASYNC: the tests' late completions
	ioringOpSend           = 26
	sqeSize                = 64
	cqeSize                = 16
)

type uringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type uringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  uringSQOffsets
	cqOff                                                                  uringCQOffsets
}

// ringBatchDefault is how many sends go in one io_uring_enter unless
// LIVECART_LIVE_IOURING gives another number.
const ringBatchDefault = 256

// ringBatchFromEnv reads LIVECART_LIVE_IOURING: unset, "1" or "on": io_uring sends
// with ringBatchDefault per io_uring_enter; "0" or "off": sendto(2), one per
// connection; a number from 2 to 4096: io_uring with that many per io_uring_enter.
// Any other value gives ringBatchDefault and an error saying what was wrong.
func ringBatchFromEnv() (int, error) {
	v := os.Getenv("LIVECART_LIVE_IOURING")
	switch v {
	case "", "1", "on", "true":
		return ringBatchDefault, nil
	case "0", "off", "false":
		return 0, nil
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 2 && n <= 4096 {
		return n, nil
	}
	return ringBatchDefault, fmt.Errorf("LIVECART_LIVE_IOURING=%q: want on, off or a batch size from 2 to 4096; using %d", v, ringBatchDefault)
}

// newSendRing sets up a ring for batches of up to n sends; nil when the kernel
// refuses (no io_uring, io_uring_disabled, a seccomp filter, ...): the shard then
// sends with sendNow.
func newSendRing(n int) *sendRing {
	if n < 2 {
		return nil
	}
	var p uringParams
	var fd uintptr
	var errno syscall.Errno
	for _, flags := range []uint32{ioringSetupSubmitAll | ioringSetupCoopTaskrun, 0} {
		p = uringParams{flags: flags}
		fd, _, errno = syscall.RawSyscall(unix.SYS_IO_URING_SETUP, uintptr(n), uintptr(unsafe.Pointer(&p)), 0)
		if errno != syscall.EINVAL {
			break
		}
	}
	if errno != 0 {
		return nil
	}
	r := &sendRing{fd: int(fd), entries: p.sqEntries}
	if p.features&ioringFeatSingleMap == 0 || p.cqEntries < p.sqEntries {
		r.close()
		return nil
	}
	size := max(int(p.sqOff.array)+int(p.sqEntries)*4, int(p.cqOff.cqes)+int(p.cqEntries)*cqeSize)
	mem, err := unix.Mmap(r.fd, ioringOffSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil
	}
	r.ringMem = mem
	sqes, err := unix.Mmap(r.fd, ioringOffSQEs, int(p.sqEntries)*sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil
	}
	r.sqeMem = sqes
	base := unsafe.Pointer(&mem[0])
	r.sqHead = (*uint32)(unsafe.Add(base, p.sqOff.head))
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = (*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqArray = unsafe.Add(base, p.sqOff.array)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = (*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Add(base, p.cqOff.cqes)
	r.sqes = unsafe.Pointer(&sqes[0])
	for i := uint32(0); i < p.sqEntries; i++ {
		*(*uint32)(unsafe.Add(r.sqArray, 4*i)) = i
	}
	return r
}

// batch is how many sends one call of sendAll may take.
func (r *sendRing) batch() int { return int(r.entries) }

// sendAll sends bufs[i] on fds[i], each without waiting (MSG_DONTWAIT), with as few
// io_uring_enter calls as the kernel allows, and returns once every send has
// completed: res[i] is what send(2) would return (bytes sent, or -errno). The
// kernel reads bufs only before sendAll returns. len(fds) ≤ r.batch().
func (r *sendRing) sendAll(fds []int, bufs [][]byte, res []int32) {
	n := uint32(len(fds))
	tail := *r.sqTail // only we move it
	mask := *r.sqMask
	for i := uint32(0); i < n; i++ {
		idx := (tail + i) & mask
		sqe := unsafe.Add(r.sqes, uintptr(idx)*sqeSize)
		*(*[sqeSize]byte)(sqe) = [sqeSize]byte{}
		*(*uint8)(sqe) = ioringOpSend
		*(*uint8)(unsafe.Add(sqe, 1)) = r.sqeFlags
		*(*int32)(unsafe.Add(sqe, 4)) = int32(fds[i])
		b := bufs[i]
		*(*uint64)(unsafe.Add(sqe, 16)) = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
		*(*uint32)(unsafe.Add(sqe, 24)) = uint32(len(b))
		*(*uint32)(unsafe.Add(sqe, 28)) = syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL
		*(*uint64)(unsafe.Add(sqe, 32)) = uint64(i)
	}
	atomic.StoreUint32(r.sqTail, tail+n)
	for i := range res[:n] {
		res[i] = -int32(syscall.EIO) // until its CQE says otherwise
	}
	// The submission is a raw system call: every send carries MSG_DONTWAIT, so none
	// waits and in practice all have completed when it returns. A plain Syscall6 of
	// ~1 ms (256 sends and their loopback receive work) sat in _Psyscall long enough
	// for sysmon to retake the P every time, which woke another thread and kept
	// sysmon polling every 20 µs (docs/BENCHMARKS.md, Live channel, session 18:
	// ~0.15 µs per delivery). Only completions still missing after it (a send the
	// kernel finished in a worker) are waited for, with the plain Syscall6 and
	// GETEVENTS, as is a submission that made no progress.
	toSubmit, done := n, uint32(0)
	wait := false
	for done < n {
		var got uintptr
		var errno syscall.Errno
		if toSubmit > 0 && !wait {
			got, _, errno = syscall.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), 0, 0, 0, 0)
			wait = errno != 0 || got == 0 // EINTR, EAGAIN, EBUSY: retry waiting
		} else {
			got, _, errno = syscall.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(n-done), ioringEnterGetEvents, 0, 0)
			wait = false
		}
		if errno == 0 {
			toSubmit -= uint32(got)
		} else if errno != syscall.EINTR && errno != syscall.EAGAIN && errno != syscall.EBUSY {
			// The ring failed (it does not in practice). The sends not submitted
			// (the last toSubmit: the kernel takes them in order) are taken back and
			// answer EAGAIN, so their bytes go to their writer goroutines as a full
			// socket's would; those already completed are reaped below; the ring is
			// not used again (broken). A submitted send whose completion never came
			// counts as failed (EIO): it may have sent part of its bytes.
			r.broken = true
			atomic.StoreUint32(r.sqTail, tail+n-toSubmit)
			for i := n - toSubmit; i < n; i++ {
				res[i] = -int32(syscall.EAGAIN)
			}
		}
		head := *r.cqHead
		ctail := atomic.LoadUint32(r.cqTail)
		cmask := *r.cqMask
		for ; head != ctail; head++ {
			cqe := unsafe.Add(r.cqes, uintptr(head&cmask)*cqeSize)
			if i := *(*uint64)(cqe); i < uint64(n) {
				res[i] = *(*int32)(unsafe.Add(cqe, 8))
			}
			done++
		}
		atomic.StoreUint32(r.cqHead, head)
		if r.broken {
			break
		}
	}
}

func (r *sendRing) close() {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.ringMem != nil {
		unix.Munmap(r.ringMem)
	}
	syscall.Close(r.fd)
}
