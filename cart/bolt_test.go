package cart

import (
	"path/filepath"
	"testing"
)

func openTestBolt(t *testing.T) Store {
	st, err := OpenBolt(filepath.Join(t.TempDir(), "livecart.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestBoltStore(t *testing.T) { runStoreSuite(t, openTestBolt) }
