//go:build pprofdebug

package main

// Built only with -tags pprofdebug: LIVECART_PPROF_ADDR (e.g. 127.0.0.1:6060) serves
// net/http/pprof there, for profiling under load. Release builds have no such listener.

import (
	"log"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("LIVECART_PPROF_ADDR"); addr != "" {
		go func() { log.Println(http.ListenAndServe(addr, nil)) }()
	}
}
