//go:build !unix

package web

import (
	"net"
	"net/http"
)

// LazyBackgroundReads returns ln as it is: the waiting read of lazyread_unix.go is for
// unix systems only.
func LazyBackgroundReads(srv *http.Server, ln net.Listener) net.Listener { return ln }
