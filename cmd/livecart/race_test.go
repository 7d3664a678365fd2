//go:build race

package main

// raceEnabled: under -race pion runs several times slower on a shared two-core
// machine, so the 1 s first-keyframe bound is checked by the plain run only.
const raceEnabled = true
