package cart

import (
	"os"
	"syscall"
	"testing"
)

// dropFileCache asks the kernel to drop the file's cached pages (a cold open, as after
// a reboot; a process killed and restarted finds them cached).
func dropFileCache(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const fadvDontNeed = 4
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); e != 0 {
		b.Fatal(e)
	}
}
