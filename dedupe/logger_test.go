package dedupe

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestBadgerLogsGoThroughZap(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := openTest(t, t.TempDir(), func(o *Options) {
		o.Logger = zap.New(core)
		o.GCInterval = time.Millisecond // exercise the GC loop too
	})
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	assert.NoError(t, s.Close())
	assert.Less(t, time.Since(start), 5*time.Second, "Close stops the GC loop")

	badgerLines := logs.FilterLoggerName("badger").All()
	assert.NotEmpty(t, badgerLines, "Badger's open/close chatter is captured")
	for _, e := range badgerLines {
		assert.Equal(t, zapcore.DebugLevel, e.Level, "Badger info is logged at debug: %q", e.Message)
		assert.NotRegexp(t, `\s$`, e.Message)
	}
}
