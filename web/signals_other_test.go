//go:build !unix

package web

import "os"

// No SIGSTOP here: the tests that freeze a redis-server skip.
var sigStop, sigCont os.Signal
