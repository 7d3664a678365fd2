package live

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"syscall"
	"testing"
	"time"
)

// tlsServerConfig has a self-signed certificate for 127.0.0.1.
func tlsServerConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestRedisClientOverTLSAbortsOnClose: a rediss:// URL gets the aborting dialer too
// (TLS over a connection reset when closed, keep-alive as go-redis's): a try given up
// never reaches Redis later. (Before: a TLS URL kept go-redis's own dialer, whose
// connections close with a close_notify and a FIN, the kernel going on sending what
// it has not delivered.)
func TestRedisClientOverTLSAbortsOnClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conf := tlsServerConfig(t)
	rdb, err := NewRedisClient("rediss://" + ln.Addr().String() + "/0?skip_verify=true")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	type accepted struct {
		raw net.Conn // the TCP connection under s
		s   *tls.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		s := tls.Server(c, conf)
		acc <- accepted{c, s, s.Handshake()}
	}()
	c, err := rdb.Options().Dialer(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-acc
	if a.err != nil {
		t.Fatal(a.err)
	}
	s := a.s
	defer a.raw.Close()
	if _, ok := c.(*tls.Conn); !ok {
		t.Fatalf("dialled a %T, want a TLS connection", c)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "PING\r\n" {
		t.Fatalf("server read %q, %v; want PING over TLS", buf, err)
	}
	c.Close()
	// TLS reads the close_notify alert (EOF); the TCP connection under it was reset.
	if _, err := s.Read(buf); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("TLS read after the client closed: %v, want EOF or a reset", err)
	}
	if _, err := a.raw.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("TCP read after the client closed: %v, want a connection reset", err)
	}
}
