//go:build !linux

package stream

import "net"

// Without Linux's UDP_SEGMENT every datagram is its own message.
const gsoControlLen = 0

func gsoSupported(*net.UDPConn) bool { return false }

func gsoControl(b []byte, _ int) []byte { return b }
