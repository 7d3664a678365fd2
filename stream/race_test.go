//go:build race

package stream

// The race detector slows pion's DTLS and SRTP several times on a shared two-core
// machine; timing bounds stretch by this factor under -race.
const timeScale = 3
