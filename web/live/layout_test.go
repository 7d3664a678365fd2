package live

import (
	"testing"
	"unsafe"
)

// TestConnHotFieldsInThreeLines: what put and flushFast touch per event lies in a
// conn's first hotBytes, and every conn starts a cache line (its size is a size class
// of whole lines), so those are three lines, the ones prefetch asks for.
func TestConnHotFieldsInThreeLines(t *testing.T) {
	var c conn
	if got := unsafe.Sizeof(c); got != connSize || connSize%64 != 0 {
		t.Fatalf("conn is %d bytes, want connSize %d, a multiple of 64 (pad it to the next one)", got, connSize)
	}
	bc := unsafe.Offsetof(c.bcMem)
	hot := map[string]uintptr{
		"mu": unsafe.Offsetof(c.mu) + unsafe.Sizeof(c.mu), "queue": unsafe.Offsetof(c.queue) + unsafe.Sizeof(c.queue),
		"spare": unsafe.Offsetof(c.spare) + unsafe.Sizeof(c.spare), "queuedBytes": unsafe.Offsetof(c.queuedBytes) + 8,
		"sendingAt": unsafe.Offsetof(c.sendingAt) + unsafe.Sizeof(c.sendingAt), "closeCode": unsafe.Offsetof(c.closeCode) + 8,
		"hub": unsafe.Offsetof(c.hub) + 8, "shard": unsafe.Offsetof(c.shard) + 8,
		"closeNow": unsafe.Offsetof(c.closeNow) + 1, "readerGone": unsafe.Offsetof(c.readerGone) + 1,
		"pingDue": unsafe.Offsetof(c.pingDue) + 1, "inWriter": unsafe.Offsetof(c.inWriter) + 1,
		"inShard": unsafe.Offsetof(c.inShard) + 1, "shardBusy": unsafe.Offsetof(c.shardBusy) + 1,
		"failed": unsafe.Offsetof(c.failed) + 1, "writerGone": unsafe.Offsetof(c.writerGone) + 1,
		"bc.mu":     bc + unsafe.Offsetof(c.bcMem.mu) + unsafe.Sizeof(c.bcMem.mu),
		"bc.closed": bc + unsafe.Offsetof(c.bcMem.closed) + 1,
		"bc.fd":     bc + unsafe.Offsetof(c.bcMem.fd) + 8,
	}
	for name, end := range hot {
		if end > hotBytes {
			t.Errorf("%s ends at byte %d, past the first %d", name, end, hotBytes)
		}
	}
	var keep []*conn
	for i := 0; i < 64; i++ {
		c := &conn{}
		keep = append(keep, c)
		if p := uintptr(unsafe.Pointer(c)); p%64 != 0 {
			t.Fatalf("conn %d at %#x: not at the start of a cache line", i, p)
		}
	}
	_ = keep
}
