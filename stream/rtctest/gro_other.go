//go:build !linux

package rtctest

import (
	"errors"
	"sync/atomic"

	"github.com/pion/transport/v2"
)

var groStats struct {
	reads, packets atomic.Int64
}

func newGRONet() (transport.Net, error) { return nil, errors.New("rtctest: UDP GRO needs Linux") }
