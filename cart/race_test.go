//go:build race

package cart

// raceEnabled: the race detector moves some stack values to the heap (newID's UUID),
// so allocation counts are checked by the plain run only.
const raceEnabled = true
