package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"

	"github.com/livecart/livecart/cart"
	"github.com/livecart/livecart/web"
	"github.com/livecart/livecart/web/auth"
)

func main() {
	st, err := cart.OpenBolt(os.Args[1])
	if err != nil {
		panic(err)
	}
	go http.ListenAndServe("127.0.0.1:18199", nil)
	s := web.New(web.Deps{Store: st, Auth: auth.New([]byte("loadgen-secret-0123456789"), nil)})
	http.ListenAndServe("127.0.0.1:18182", s.Handler())
}
