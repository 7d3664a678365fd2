//go:build race

package stream

// raceEnabled: under -race on a shared two-core machine pion's DTLS and SRTP run
// several times slower and the test process may get a fraction of a core, so the 1 s
// keyframe bound is checked by the plain run only (every viewer must still get one).
const raceEnabled = true
