package e2e

import (
	"os"
	"testing"
	"time"
)

func TestTmpShot(t *testing.T) {
	b := NewBrowser(t)
	tab := b.NewTab(t, 1280, 900)
	tab.Navigate(os.Getenv("SHOT_URL"))
	time.Sleep(3 * time.Second)
	s, err := Eval[string](tab, `document.querySelector('#live-state').textContent + ' | ' + document.querySelector('#preview').videoWidth + ' | ' + document.querySelector('#camera').options.length`)
	t.Logf("%q %v issues %q", s, err, tab.Issues())
}
