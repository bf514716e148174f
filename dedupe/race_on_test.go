//go:build race

package dedupe

// raceEnabled: the race detector multiplies memory use, so RSS bounds do not apply.
const raceEnabled = true
