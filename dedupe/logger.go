package dedupe

import (
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// badgerLogger routes Badger's own logs through zap: errors and warnings keep
// their level, Badger's chatty Info and Debug lines go to debug.
type badgerLogger struct{ l *zap.SugaredLogger }

var _ badger.Logger = badgerLogger{}

func newBadgerLogger(l *zap.Logger) badgerLogger {
	return badgerLogger{l: l.Named("badger").WithOptions(zap.AddCallerSkip(3)).Sugar()}
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(zap.ErrorLevel, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(zap.WarnLevel, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(zap.DebugLevel, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(zap.DebugLevel, f, a) }

func (b badgerLogger) log(lvl zapcore.Level, f string, a []any) {
	if b.l.Level() > lvl {
		return // do not format what is not logged
	}
	b.l.Logf(lvl, "%s", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
