//go:build !race

package stream

const timeScale = 1
