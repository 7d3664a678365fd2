//go:build !unix

package main

import "os"

// No SIGSTOP here: the tests that freeze a redis-server skip.
var sigStop, sigCont os.Signal
