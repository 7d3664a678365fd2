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

func newRecvNet(bool, *SocketTimes) (transport.Net, error) {
	return nil, errors.New("rtctest: UDP GRO and socket receive times need Linux")
}
