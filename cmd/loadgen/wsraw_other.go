//go:build !linux

package main

import (
	"errors"
	"time"
)

// The raw epoll reader (wsraw.go) is Linux's: elsewhere the ws mode reads its viewers
// with gorilla, and these stand-ins are never reached (-reader epoll is refused).
const defaultReader = "gorilla"

var errNoEpoll = errors.New("-reader epoll needs Linux")

type rawWS struct{}

func dialRaw(string, time.Duration, bool) (*rawWS, error) { return nil, errNoEpoll }
func (*rawWS) readFirst() ([]byte, error)                 { return nil, errNoEpoll }
func (*rawWS) Close() error                               { return nil }

type epollReaders struct{ recvs, looks, waits []int64 }

func startEpollReaders([]*wsViewer, int, func(int, *wsViewer, []byte, arrival)) (*epollReaders, error) {
	return nil, errNoEpoll
}

func (*epollReaders) stop() {}
