//go:build unix

package web

import (
	"os"
	"syscall"
)

// The signals that freeze and thaw a test's private redis-server.
var sigStop, sigCont os.Signal = syscall.SIGSTOP, syscall.SIGCONT
