//go:build !unix

package bench

import "time"

// processCPU is not measured here: the report leaves CPU per request out.
func processCPU() time.Duration { return 0 }
