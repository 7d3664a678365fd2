//go:build !linux

package stream

import (
	"net"

	"golang.org/x/net/ipv4"
)

// Without Linux's UDP_SEGMENT every datagram is its own message.
const gsoControlLen = 0

func gsoSupported(*net.UDPConn) bool { return false }

func gsoControl(b []byte, _ int) []byte { return b }

// rawSender exists on Linux only; elsewhere the batcher sends with x/net's WriteBatch.
type rawSender struct{}

func newRawSender(*net.UDPConn) *rawSender { return nil }

func (*rawSender) send([]ipv4.Message) (int, error) { panic("unreachable") }

var errNoSockaddr error

// rawReader exists on Linux only; elsewhere the socket's own ReadFrom reads.
type rawReader struct{}

func newRawReader(*net.UDPConn) *rawReader { return nil }
