package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// exampleSecret is the secret configs/node-a.yaml and node-b.yaml carry as written: a
// node started with it warns (TestSecretWarnings keeps the two equal).
const exampleSecret = "change-me-to-a-long-random-secret"

// loadSecret returns the configured secret, else the one kept in the data dir; with
// create it makes and saves one there on first start. generated reports whether the
// secret came from the data dir (so the server prints ready links).
func loadSecret(cfg Config, create bool) (secret []byte, fromDataDir bool, err error) {
	if cfg.Auth.Secret != "" {
		return []byte(cfg.Auth.Secret), false, nil
	}
	path := filepath.Join(cfg.DataDir, "secret")
	raw, err := os.ReadFile(path)
	if err == nil {
		return []byte(strings.TrimSpace(string(raw))), true, nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return nil, false, fmt.Errorf("no auth secret: set LIVECART_AUTH_SECRET or auth.secret, or start the server once to create %s (%v)", path, err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, false, err
	}
	s := hex.EncodeToString(b)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, false, fmt.Errorf("save secret: %w", err)
	}
	return []byte(s), true, nil
}
