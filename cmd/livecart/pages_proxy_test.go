package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// cutProxy is a TCP proxy in front of the server that a test can cut (every open
// connection dropped, new ones refused) and restore, to show a page losing and
// regaining the server. It remembers the request line of every connection.
type cutProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	down   bool                  // guarded by mu
	frozen bool                  // guarded by mu: bytes are read and dropped, nothing closed
	conns  map[net.Conn]struct{} // guarded by mu
	lines  []string              // guarded by mu: first line of each proxied connection
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *cutProxy) serve(c net.Conn) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(up) {
		return
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	p.mu.Lock()
	p.lines = append(p.lines, strings.TrimSpace(line))
	p.mu.Unlock()
	go func() {
		p.pipe(up, io.MultiReader(bytes.NewReader([]byte(line)), br))
		up.Close()
	}()
	p.pipe(c, up)
}

// pipe copies src to dst, dropping what it reads while the proxy is frozen.
func (p *cutProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.isFrozen() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cutProxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

// freeze drops every byte in both directions, closing nothing: to each side the other
// falls silent, as on a network that lost the route (a half-open connection).
func (p *cutProxy) freeze(on bool) {
	p.mu.Lock()
	p.frozen = on
	p.mu.Unlock()
}

// cut drops every connection and refuses new ones until restore.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// requestLines returns the request lines seen so far that contain substr.
func (p *cutProxy) requestLines(substr string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.lines {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
