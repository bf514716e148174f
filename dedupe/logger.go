package dedupe

import (
	"strings"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// badgerLogger routes Badger's own logs through zap: errors and warnings keep
// their level, Badger's chatty Info and Debug lines go to debug.
type badgerLogger struct{ l *zap.SugaredLogger }

var _ badger.Logger = badgerLogger{}

func newBadgerLogger(l *zap.Logger) badgerLogger {
	return badgerLogger{l: l.Named("badger").WithOptions(zap.AddCallerSkip(2)).Sugar()}
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Errorf(trimNL(f), a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warnf(trimNL(f), a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debugf(trimNL(f), a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debugf(trimNL(f), a...) }

func trimNL(f string) string { return strings.TrimRight(f, "\n") }
