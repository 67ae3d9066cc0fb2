package peer

import (
	"fmt"
	"time"
)

// LeadStatus says whether this peer could serve as a supernode: the first
// part of election, which supernodes over their leaf limit will use to
// choose whom to promote.
type LeadStatus struct {
	Eligible bool     `json:"eligible"`
	Why      []string `json:"why_not,omitempty"`
}

// minLeadRate is the least upload capacity (bytes/s) a supernode needs: its
// leaves' queries, hits and member lists, and signalling.
const minLeadRate = 1 << 20

// leadStatus checks the conditions to lead: reachable from outside as the
// supernodes' dial-back confirmed (not as the peer claims), up for long
// enough, with upload to spare, and not opted out.
func (d *Daemon) leadStatus(now time.Time) LeadStatus {
	var why []string
	if d.cfg.NoLead {
		why = append(why, "opted out (--no-lead)")
	}
	public := false
	for _, st := range d.attach.all() {
		public = public || st.Public
	}
	if !public {
		why = append(why, "not confirmed publicly reachable by a supernode's dial-back")
	}
	if up := now.Sub(d.started); up < d.cfg.LeadAfter {
		why = append(why, fmt.Sprintf("up %v of the %v required", up.Round(time.Second), d.cfg.LeadAfter))
	}
	if d.cfg.UploadRate > 0 && d.cfg.UploadRate < minLeadRate {
		why = append(why, fmt.Sprintf("upload capped at %d B/s, under the %d B/s a supernode needs", d.cfg.UploadRate, minLeadRate))
	}
	return LeadStatus{Eligible: len(why) == 0, Why: why}
}
