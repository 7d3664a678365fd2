package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// cmdProxy stands between one node and its Redis (the node's redis url names addr). It
// reads each command the node sends and asks forward about it: a command forward says
// false to never reaches Redis; the others do, and their replies come back.
type cmdProxy struct {
	addr string
}

// newCmdProxy listens on a free loopback port and forwards to target. forward is called
// for every command, from one goroutine per connection.
func newCmdProxy(t *testing.T, target string, forward func(cmd [][]byte) bool) *cmdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			conns.Add(2)
			go func() { // replies
				defer conns.Done()
				io.Copy(c, up)
				c.Close()
			}()
			go func() { // commands
				defer conns.Done()
				defer up.Close()
				rd := bufio.NewReader(c)
				for {
					raw, cmd, err := readCommand(rd)
					if err != nil {
						return
					}
					if !forward(cmd) {
						continue // lost on the way
					}
					if _, err := up.Write(raw); err != nil {
						return
					}
				}
			}()
		}
	}()
	return &cmdProxy{addr: ln.Addr().String()}
}

// freezeProxy is a cmdProxy that forwards every command until one that freeze picks:
// that command and every later one, on every connection, never reach Redis, as if the
// node lost its network to Redis right then (the replies of what went before still
// come back).
type freezeProxy struct {
	addr   string
	frozen chan struct{} // closed once a command was held back
}

func newFreezeProxy(t *testing.T, target string, freeze func(cmd [][]byte) bool) *freezeProxy {
	t.Helper()
	p := &freezeProxy{frozen: make(chan struct{})}
	var once sync.Once
	p.addr = newCmdProxy(t, target, func(cmd [][]byte) bool {
		select {
		case <-p.frozen:
			return false
		default:
		}
		if freeze(cmd) {
			once.Do(func() { close(p.frozen) })
			return false
		}
		return true
	}).addr
	return p
}

// tripProxy is a cmdProxy that forwards every command and calls trip, before
// forwarding it, with the first command that match picks: the test freezes Redis right
// there (SIGSTOP), so that command and all later ones wait for the thaw.
type tripProxy struct {
	addr    string
	tripped chan struct{} // closed once trip ran
}

func newTripProxy(t *testing.T, target string, match func(cmd [][]byte) bool, trip func()) *tripProxy {
	t.Helper()
	p := &tripProxy{tripped: make(chan struct{})}
	var once sync.Once
	p.addr = newCmdProxy(t, target, func(cmd [][]byte) bool {
		select {
		case <-p.tripped:
		default:
			if match(cmd) {
				once.Do(func() { trip(); close(p.tripped) })
			}
		}
		return true
	}).addr
	return p
}

// readCommand reads one RESP command (an array of bulk strings, as clients send them)
// and returns its bytes and its parts.
func readCommand(rd *bufio.Reader) (raw []byte, cmd [][]byte, err error) {
	var buf bytes.Buffer
	line := func() (string, error) {
		l, err := rd.ReadString('\n')
		buf.WriteString(l)
		if err != nil {
			return "", err
		}
		if len(l) < 3 {
			return "", fmt.Errorf("resp: short line %q", l)
		}
		return l[:len(l)-2], nil
	}
	head, err := line()
	if err != nil {
		return nil, nil, err
	}
	if head[0] != '*' {
		return nil, nil, fmt.Errorf("resp: want an array, got %q", head)
	}
	n, err := strconv.Atoi(head[1:])
	if err != nil {
		return nil, nil, err
	}
	for range n {
		h, err := line()
		if err != nil {
			return nil, nil, err
		}
		if h[0] != '$' {
			return nil, nil, fmt.Errorf("resp: want a bulk string, got %q", h)
		}
		size, err := strconv.Atoi(h[1:])
		if err != nil {
			return nil, nil, err
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(rd, b); err != nil {
			return nil, nil, err
		}
		buf.Write(b)
		cmd = append(cmd, b[:size])
	}
	return buf.Bytes(), cmd, nil
}

// scriptCall splits an EVAL or EVALSHA into its keys and arguments (ok false for any
// other command).
func scriptCall(cmd [][]byte) (keys, args [][]byte, ok bool) {
	if len(cmd) < 3 {
		return nil, nil, false
	}
	name := string(bytes.ToUpper(cmd[0]))
	if name != "EVAL" && name != "EVALSHA" {
		return nil, nil, false
	}
	n, err := strconv.Atoi(string(cmd[2]))
	if err != nil || 3+n > len(cmd) {
		return nil, nil, false
	}
	return cmd[3 : 3+n], cmd[3+n:], true
}
