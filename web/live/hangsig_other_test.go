//go:build !unix

package live

import "os"

// No SIGSTOP here: startHangableRedis skips its tests.
var sigStop, sigCont os.Signal
