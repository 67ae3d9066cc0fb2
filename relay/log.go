package relay

import (
	"time"

	"github.com/pion/logging"
	"github.com/rs/zerolog"
)

// pionLogs hands pion a zerolog logger. pion logs every packet at debug and
// routine refusals at info, so each of its levels lands one lower here; its
// warnings and errors are sampled, as a stream of bad packets would otherwise
// become a stream of log lines. Its errors are mostly a peer gone away, not a
// relay that failed, so they become warnings.
type pionLogs struct{ log zerolog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	l := f.log.With().Str("component", "pion_"+scope).Logger()
	return &pionLog{l: l, sampled: l.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Second})}
}

type pionLog struct{ l, sampled zerolog.Logger }

func (p *pionLog) Trace(msg string)                  { p.l.Trace().Msg(msg) }
func (p *pionLog) Tracef(format string, args ...any) { p.l.Trace().Msgf(format, args...) }
func (p *pionLog) Debug(msg string)                  { p.l.Trace().Msg(msg) }
func (p *pionLog) Debugf(format string, args ...any) { p.l.Trace().Msgf(format, args...) }
func (p *pionLog) Info(msg string)                   { p.l.Debug().Msg(msg) }
func (p *pionLog) Infof(format string, args ...any)  { p.l.Debug().Msgf(format, args...) }
func (p *pionLog) Warn(msg string)                   { p.sampled.Warn().Msg(msg) }
func (p *pionLog) Warnf(format string, args ...any)  { p.sampled.Warn().Msgf(format, args...) }
func (p *pionLog) Error(msg string)                  { p.sampled.Warn().Msg(msg) }
func (p *pionLog) Errorf(format string, args ...any) { p.sampled.Warn().Msgf(format, args...) }
