//go:build !unix

package cart

// maxRSS is not measured here (no getrusage): 0.
func maxRSS() int64 { return 0 }
