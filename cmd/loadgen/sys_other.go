//go:build !unix

package main

import "time"

// raiseFileLimit: no soft limit to lift here.
func raiseFileLimit() {}

// selfCPU is not measured here (no getrusage): 0.
func selfCPU() time.Duration { return 0 }
