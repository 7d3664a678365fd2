//go:build !linux

package live

// sendRing is Linux's io_uring; elsewhere there is none and the shards send as
// rawSends says.
type sendRing struct{ broken bool }

func ringBatchFromEnv() (int, error)               { return 0, nil }
func newSendRing(int) *sendRing                    { return nil }
func (*sendRing) batch() int                       { return 0 }
func (*sendRing) sendAll([]int, [][]byte, []int32) { panic("unreachable: no io_uring") }
func (*sendRing) close()                           {}
