//go:build unix

package live

import (
	"os"
	"syscall"
)

// The signals that freeze and thaw a hangableRedis.
var sigStop, sigCont os.Signal = syscall.SIGSTOP, syscall.SIGCONT
