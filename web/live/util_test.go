package live

import (
	"errors"
	"slices"
	"time"
)

func errorAs(err error, target any) bool { return errors.As(err, target) }

func slicesSort(s []time.Duration) { slices.Sort(s) }
