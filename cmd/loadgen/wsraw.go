//go:build linux

package main

// The ws mode's cheap reader: each viewer is a minimal websocket client on a raw
// socket kept out of Go's netpoller, and a few epoll loops (one per core) read them
// all, instead of a goroutine per viewer woken for every frame. The load generator
// shares the cores with the server, so what it saves per delivery goes to the server.
// Every frame is still parsed (lengths, opcodes, close codes; pings are answered) and
// every text frame checked for seq and latency, as the gorilla reader does.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
)

// defaultReader is the ws mode's -reader: this one.
const defaultReader = "epoll"

// rawWS is one client connection: a blocking handshake, then non-blocking reads.
type rawWS struct {
	fd     int
	buf    []byte // bytes read that do not make a whole frame yet
	stamps bool   // SO_TIMESTAMPNS is on: reads take the kernel's receive time
}

// dialRaw opens a websocket to u (ws://host:port/path) and returns it with what the
// server sent after the handshake still in buf. With stamps, the kernel stamps each
// packet's arrival (SO_TIMESTAMPNS) and recvStamped reads it.
func dialRaw(u string, timeout time.Duration, stamps bool) (*rawWS, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp4", pu.Host)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	w := &rawWS{fd: fd, stamps: stamps}
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	if stamps {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
			w.Close()
			return nil, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
		}
	}
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := connect(fd, sa); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.handshake(pu); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// connect is a blocking connect(2) that survives the Go runtime's signals: after EINTR
// the connection goes on, and connect reports EALREADY until it is made (EISCONN).
func connect(fd int, sa syscall.Sockaddr) error {
	err := syscall.Connect(fd, sa)
	for err == syscall.EINTR || err == syscall.EALREADY {
		if err == syscall.EALREADY {
			time.Sleep(time.Millisecond)
		}
		err = syscall.Connect(fd, sa)
	}
	if err == syscall.EISCONN {
		return nil
	}
	return err
}

// read is read(2), again after EINTR.
func (w *rawWS) read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(w.fd, p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func (w *rawWS) handshake(u *url.URL) error {
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if err := w.writeAll([]byte(req)); err != nil {
		return err
	}
	var resp []byte
	chunk := make([]byte, 4096)
	for {
		n, err := w.read(chunk)
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("handshake: %w", io.ErrUnexpectedEOF)
		}
		resp = append(resp, chunk[:n]...)
		if i := bytes.Index(resp, []byte("\r\n\r\n")); i >= 0 {
			w.buf = append(w.buf, resp[i+4:]...)
			resp = resp[:i]
			break
		}
		if len(resp) > 16<<10 {
			return errors.New("handshake: response headers too long")
		}
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101")) {
		line, _, _ := bytes.Cut(resp, []byte("\r\n"))
		return fmt.Errorf("handshake: %s", line)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	accept := base64.StdEncoding.EncodeToString(sum[:])
	for _, h := range strings.Split(string(resp), "\r\n")[1:] {
		name, val, _ := strings.Cut(h, ":")
		if strings.EqualFold(name, "Sec-WebSocket-Accept") && strings.TrimSpace(val) == accept {
			return nil
		}
	}
	return errors.New("handshake: bad Sec-WebSocket-Accept")
}

// readFirst reads, waiting, until one whole text frame has come and returns it; the
// connection is non-blocking afterwards.
func (w *rawWS) readFirst() ([]byte, error) {
	chunk := make([]byte, 16<<10)
	for {
		op, payload, n, err := nextFrame(w.buf)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			if op != websocket.TextMessage {
				return nil, fmt.Errorf("first frame: opcode %d, want text", op)
			}
			first := append([]byte(nil), payload...)
			w.buf = append(w.buf[:0], w.buf[n:]...)
			return first, syscall.SetNonblock(w.fd, true)
		}
		m, err := w.read(chunk)
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return nil, io.ErrUnexpectedEOF
		}
		w.buf = append(w.buf, chunk[:m]...)
	}
}

// nextFrame parses one unmasked server frame at the start of b: n is its length in b,
// 0 when b does not hold it whole yet. Fragmented frames are refused: the server
// sends every event as one frame.
func nextFrame(b []byte) (op int, payload []byte, n int, err error) {
	if len(b) < 2 {
		return 0, nil, 0, nil
	}
	if b[0]&0x80 == 0 || b[0]&0x70 != 0 {
		return 0, nil, 0, fmt.Errorf("frame: fragmented or reserved bits set (%#x)", b[0])
	}
	if b[1]&0x80 != 0 {
		return 0, nil, 0, errors.New("frame: masked frame from the server")
	}
	op = int(b[0] & 0x0f)
	size, head := uint64(b[1]&0x7f), 2
	switch size {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0, nil
		}
		size, head = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0, nil
		}
		size, head = binary.BigEndian.Uint64(b[2:]), 10
	}
	if size > 64<<20 {
		return 0, nil, 0, fmt.Errorf("frame: %d bytes", size)
	}
	end := head + int(size)
	if len(b) < end {
		return 0, nil, 0, nil
	}
	return op, b[head:end], end, nil
}

// frames handles the whole frames at the start of b: text ones go to text, pings are
// answered, a close ends the connection (as a *websocket.CloseError). It returns how
// many bytes it used.
func (w *rawWS) frames(b []byte, text func([]byte)) (int, error) {
	used := 0
	for {
		op, payload, n, err := nextFrame(b[used:])
		if err != nil || n == 0 {
			return used, err
		}
		used += n
		switch op {
		case websocket.TextMessage:
			text(payload)
		case websocket.PingMessage:
			w.writeAll(clientFrame(websocket.PongMessage, payload))
		case websocket.PongMessage:
		case websocket.CloseMessage:
			code := websocket.CloseNoStatusReceived
			if len(payload) >= 2 {
				code = int(binary.BigEndian.Uint16(payload))
			}
			w.writeAll(clientFrame(websocket.CloseMessage, payload[:min(len(payload), 2)]))
			return used, &websocket.CloseError{Code: code, Text: string(payload[min(len(payload), 2):])}
		default:
			return used, fmt.Errorf("frame: opcode %d", op)
		}
	}
}

// clientFrame builds a masked client frame (control frames are small).
func clientFrame(op int, payload []byte) []byte {
	b := make([]byte, 0, 6+len(payload))
	b = append(b, 0x80|byte(op), 0x80|byte(len(payload)))
	var mask [4]byte
	rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// writeAll sends p (small control frames; the socket's buffer has room).
func (w *rawWS) writeAll(p []byte) error {
	for len(p) > 0 {
		n, err := syscall.Write(w.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Close closes the socket (which also takes it out of any epoll set).
func (w *rawWS) Close() error {
	if w.fd < 0 {
		return nil
	}
	err := syscall.Close(w.fd)
	w.fd = -1
	return err
}

// epollReaders reads viewers' raw connections, n loops each with its own epoll set,
// until stop is called; each viewer is read by one loop only.
type epollReaders struct {
	quit  chan struct{}
	wg    sync.WaitGroup
	ended atomic.Int32 // viewers whose connection has ended
	// Per loop, written when it ends: recv calls that returned data, and looks
	// (epoll_wait calls; the waiting ones among them).
	recvs, looks, waits []int64
}

// startEpollReaders spreads viewers over n loops; onText gets every text frame with
// when it came (arrival) and the number of the loop that read it (0..n-1), so that
// a loop can keep its own tallies. A viewer's end goes in its closed field (a
// *websocket.CloseError, or io.ErrUnexpectedEOF for a socket closed without a close
// frame); stop waits for the loops, after which closed may be read.
func startEpollReaders(viewers []*wsViewer, n int, onText func(loop int, v *wsViewer, frame []byte, at arrival)) (*epollReaders, error) {
	e := &epollReaders{quit: make(chan struct{}), recvs: make([]int64, n), looks: make([]int64, n), waits: make([]int64, n)}
	for i := range n {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			e.stop()
			return nil, err
		}
		var mine []*wsViewer
		for j := i; j < len(viewers); j += n {
			v := viewers[j]
			// Edge-triggered: a ready socket is reported once per arrival, and readAll
			// reads it until the kernel has no more (a level-triggered set polls each
			// ready socket twice: once to report it, once more to find it drained).
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(len(mine))}
			if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, v.raw.fd, &ev); err != nil {
				syscall.Close(epfd)
				e.stop()
				return nil, err
			}
			mine = append(mine, v)
		}
		// Frames the viewer had read already (after readFirst) are announced by no
		// edge: handle them now, before the loop starts.
		scratch := &readScratch{buf: make([]byte, readBufSize)}
		for _, v := range mine {
			if err := v.raw.buffered(func(f []byte, at arrival) { onText(i, v, f, at) }); err != nil {
				v.closed = err
				syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, v.raw.fd, nil)
				e.ended.Add(1)
			}
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer syscall.Close(epfd)
			e.loop(i, epfd, mine, scratch, onText)
		}()
	}
	return e, nil
}

// epollET is EPOLLET as the uint32 of EpollEvent.Events (the syscall package's
// constant is a negative int).
const epollET = 1 << 31

// readBufSize is each loop's read buffer: one recv takes all a socket has.
const readBufSize = 256 << 10

func (e *epollReaders) loop(id, epfd int, viewers []*wsViewer, scratch *readScratch, onText func(int, *wsViewer, []byte, arrival)) {
	events := make([]syscall.EpollEvent, 1024)
	var recvs, looks, waits int64
	defer func() { e.recvs[id], e.looks[id], e.waits[id] = recvs, looks, waits }()
	for {
		select {
		case <-e.quit:
			return
		default:
		}
		// Look without waiting first: a raw syscall, no hand-off of the P (most looks
		// find sockets ready). Only an empty look waits, in a blocking syscall.
		n := epollWaitNow(epfd, events)
		looks++
		if n == 0 {
			waits++
			var err error
			n, err = syscall.EpollWait(epfd, events, 50)
			if err != nil && err != syscall.EINTR {
				return
			}
		}
		for _, ev := range events[:max(n, 0)] {
			v := viewers[ev.Fd]
			if err := v.raw.readAll(scratch, &recvs, func(frame []byte, at arrival) { onText(id, v, frame, at) }); err != nil {
				v.closed = err
				syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, v.raw.fd, nil)
				e.ended.Add(1)
			}
		}
		if n < len(events) {
			// Caught up: let frames gather for a moment instead of being woken for each
			// one (a wake-up costs both ends more than the read; on loopback the
			// server's send pays for it). It adds at most this much to the latencies.
			time.Sleep(readerNap)
		}
	}
}

// epollWaitNow is epoll_wait with a zero timeout as a raw syscall (it never blocks),
// made as epoll_pwait with no signal mask, which every Linux architecture has (arm64
// has no epoll_wait); it returns 0 on any error.
func epollWaitNow(epfd int, events []syscall.EpollEvent) int {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0
	}
	return int(n)
}

// readerNap is how long an epoll loop that has caught up waits before looking again.
const readerNap = 500 * time.Microsecond

// recv is one non-blocking recv(2) as a raw syscall (it never blocks, so the P need
// not be handed off; and recvfrom skips read(2)'s file-position and notify work).
func (w *rawWS) recv(p []byte) (int, error) {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(w.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		default:
			return 0, errno
		}
	}
}

// recvStamped is recv as recvmsg(2) on a socket with SO_TIMESTAMPNS: sock is the
// kernel's receive time (unix ns) that came with the bytes, 0 if none did. For TCP it
// is the stamp of the last packet the call read from (tcp_recvmsg keeps the stamp of
// each packet it copies from, and a packet merged into the one before it in the
// receive queue passes its stamp on), so for every earlier byte of the call it is
// late, never early: a frame's socket arrival is at or before it.
func (w *rawWS) recvStamped(p []byte, oob *[oobWords]uint64) (n int, sock int64, err error) {
	iov := syscall.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	msg := syscall.Msghdr{Iov: &iov, Control: (*byte)(unsafe.Pointer(&oob[0]))}
	msg.Iovlen = 1
	for {
		msg.SetControllen(oobWords * 8)
		r, _, errno := syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(w.fd), uintptr(unsafe.Pointer(&msg)), syscall.MSG_DONTWAIT)
		switch errno {
		case 0:
			if msg.Flags&syscall.MSG_CTRUNC != 0 {
				return int(r), 0, nil
			}
			b := unsafe.Slice((*byte)(unsafe.Pointer(&oob[0])), min(int(msg.Controllen), oobWords*8))
			return int(r), sockTime(b), nil
		case syscall.EINTR:
			continue
		default:
			return 0, 0, errno
		}
	}
}

// oobWords is the control buffer's size in 8-byte words: room for one SCM_TIMESTAMPNS
// (a 16-byte header and a 16-byte timespec) with some to spare.
const oobWords = 8

// sockTime returns the SCM_TIMESTAMPNS receive time (unix ns) in the control messages
// b, 0 if there is none or b is malformed.
func sockTime(b []byte) int64 {
	for len(b) >= syscall.SizeofCmsghdr {
		var h syscall.Cmsghdr
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), syscall.SizeofCmsghdr), b)
		size := int(h.Len)
		if size < syscall.SizeofCmsghdr || size > len(b) {
			return 0
		}
		data := b[cmsgAlign(syscall.SizeofCmsghdr):size]
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
			var ts syscall.Timespec
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts)), data)
			return ts.Nano()
		}
		b = b[min(cmsgAlign(size), len(b)):]
	}
	return 0
}

// cmsgAlign rounds n up as the kernel aligns control messages (CMSG_ALIGN: to a long).
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}

// readScratch is one epoll loop's read buffers.
type readScratch struct {
	buf []byte
	oob [oobWords]uint64 // the control message of a stamped read (words: aligned)
}

// readAll reads the socket until the kernel has nothing more (the epoll set is
// edge-triggered: the next arrival reports it again) and handles the whole frames of
// each read; text gets each text frame with when its read returned and, on a stamped
// socket, the read's receive stamp. recvs counts the recv calls that returned data.
func (w *rawWS) readAll(s *readScratch, recvs *int64, text func(frame []byte, at arrival)) error {
	for {
		buf := s.buf
		if len(w.buf) > len(buf)/2 {
			buf = make([]byte, 2*len(w.buf))
			s.buf = buf
		}
		have := copy(buf, w.buf)
		var n int
		var sock int64
		var err error
		if w.stamps {
			n, sock, err = w.recvStamped(buf[have:], &s.oob)
		} else {
			n, err = w.recv(buf[have:])
		}
		if err == syscall.EAGAIN {
			return nil
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		*recvs++
		at := arrival{app: time.Now().UnixNano(), sock: sock}
		used, err := w.frames(buf[:have+n], func(f []byte) { text(f, at) })
		w.buf = append(w.buf[:0], buf[used:have+n]...)
		if err != nil || have+n < len(buf) {
			// A short read took all the socket had: what comes later is a new edge.
			return err
		}
	}
}

// buffered handles the whole frames already in w.buf (read without a stamp).
func (w *rawWS) buffered(text func(frame []byte, at arrival)) error {
	at := arrival{app: time.Now().UnixNano()}
	used, err := w.frames(w.buf, func(f []byte) { text(f, at) })
	w.buf = append(w.buf[:0], w.buf[used:]...)
	return err
}

func (e *epollReaders) stop() {
	close(e.quit)
	e.wg.Wait()
}
