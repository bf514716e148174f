// Package badgerlog routes Badger's own logs through zap, for the receiver's
// store (dedupe) and the sender alike.
package badgerlog

import (
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logger keeps errors and warnings at their level and sends Badger's chatty
// Info and Debug lines to debug.
type logger struct{ l *zap.SugaredLogger }

// New returns a badger.Logger writing to l, named "badger".
func New(l *zap.Logger) badger.Logger {
	return logger{l: l.Named("badger").WithOptions(zap.AddCallerSkip(3)).Sugar()}
}

func (b logger) Errorf(f string, a ...any)   { b.log(zap.ErrorLevel, f, a) }
func (b logger) Warningf(f string, a ...any) { b.log(zap.WarnLevel, f, a) }
func (b logger) Infof(f string, a ...any)    { b.log(zap.DebugLevel, f, a) }
func (b logger) Debugf(f string, a ...any)   { b.log(zap.DebugLevel, f, a) }

func (b logger) log(lvl zapcore.Level, f string, a []any) {
	if b.l.Level() > lvl {
		return // do not format what is not logged
	}
	b.l.Logf(lvl, "%s", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
