package peercli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
)

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's supernode, addresses and shared files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := localapi.NewClient(g.dataDir).Status(ctx)
			if err != nil {
				return explain(err)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "Peer ID:\t%s\n", st.PeerID)
			fmt.Fprintf(tw, "Name:\t%s\n", st.Name)
			fmt.Fprintf(tw, "Local address:\t%s\n", st.LocalAddr)
			sn := st.Supernode
			switch {
			case sn.Connected:
				fmt.Fprintf(tw, "Supernode:\t%s (%s), attached %s ago\n", sn.Addr, short(sn.PeerID), time.Since(sn.Since).Round(time.Second))
				fmt.Fprintf(tw, "Address seen by supernode:\t%s\n", sn.Observed)
				if sn.Reflexive != "" {
					fmt.Fprintf(tw, "Reflexive address (STUN):\t%s\n", sn.Reflexive)
				}
				for _, a := range sn.Proven {
					fmt.Fprintf(tw, "Also seen at (other IP family):\t%s\n", a)
				}
				fmt.Fprintf(tw, "NAT:\t%s\n", natLine(sn))
				if sn.Relay != "" {
					fmt.Fprintf(tw, "Living on relay:\t%s\n", sn.Relay)
				}
			case sn.Addr != "":
				fmt.Fprintf(tw, "Supernode:\tnot attached (last tried %s: %s)\n", sn.Addr, sn.LastError)
			default:
				fmt.Fprintf(tw, "Supernode:\tnot attached yet\n")
			}
			for _, o := range st.Supernodes {
				if o.PeerID != sn.PeerID {
					fmt.Fprintf(tw, "Also attached to:\t%s (%s), %s ago\n", o.Addr, short(o.PeerID), time.Since(o.Since).Round(time.Second))
				}
			}
			if u := st.User; u != nil {
				switch {
				case u.Registered:
					fmt.Fprintf(tw, "Username:\t%s, registered (record %d, expires %s)\n", u.Name, u.Seq, u.Expires.Local().Format(time.TimeOnly))
				case u.LastError != "":
					fmt.Fprintf(tw, "Username:\t%s, not registered: %s\n", u.Name, u.LastError)
				default:
					fmt.Fprintf(tw, "Username:\t%s, registering\n", u.Name)
				}
			}
			if st.Lead.Eligible {
				fmt.Fprintf(tw, "Can lead:\tyes (may be promoted to supernode)\n")
			} else {
				fmt.Fprintf(tw, "Can lead:\tno: %s\n", strings.Join(st.Lead.Why, "; "))
			}
			if ld := st.Lead.Leading; ld != nil {
				if ld.Active {
					fmt.Fprintf(tw, "Leading:\tsupernode %s at %s, %d of %d leaves, promoted by %s %s ago\n",
						short(ld.PeerID), ld.Addr, ld.Leaves, ld.LeafLimit, short(ld.PromotedBy), time.Since(ld.Since).Round(time.Second))
				} else {
					fmt.Fprintf(tw, "Led:\tsupernode %s at %s from %s to %s (%s)\n", short(ld.PeerID), ld.Addr,
						ld.Since.Local().Format(time.TimeOnly), ld.Ended.Local().Format(time.TimeOnly), ld.EndedWhy)
				}
			}
			fmt.Fprintf(tw, "Supernodes listed:\t%d (the overlay's member list, kept in %s)\n", sn.Listed, filepath.Join(st.DataDir, "supernodes.cache"))
			if st.ShareDir == "" {
				fmt.Fprintf(tw, "Sharing:\tnothing (start the daemon with --share FOLDER to share)\n")
			} else {
				fmt.Fprintf(tw, "Sharing:\t%d files, %s from %s\n", len(st.Shared), humanBytes(st.SharedSize), st.ShareDir)
			}
			fmt.Fprintf(tw, "Transferred:\t%s up, %s down\n", humanBytes(st.Uploaded), humanBytes(st.Downloaded))
			tw.Flush()
			if len(st.Shared) > 0 {
				fmt.Println()
				tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SHARED FILE\tSIZE\tCONTENT ID")
				for _, f := range st.Shared {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Path, humanBytes(f.Size), f.ContentID)
				}
				tw.Flush()
			}
			if len(st.Links) > 0 {
				fmt.Println()
				tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "LINKED PEER\tPATH\tPLAN\tREMOTE\tOPEN FOR")
				for _, l := range st.Links {
					plan := l.Plan
					if plan == "" {
						plan = "(theirs)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", short(l.Peer), l.Path, plan, l.Remote, time.Since(l.Since).Round(time.Second))
				}
				tw.Flush()
			}
			if len(st.Attempts) > 0 {
				fmt.Println()
				tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "CONNECTION ATTEMPT\tPEER\tPLAN\tRESULT\tTOOK")
				from := max(0, len(st.Attempts)-10)
				for _, a := range st.Attempts[from:] {
					res := a.Path
					if a.Err != "" {
						res = "failed: " + a.Err
					}
					if a.Upgrade {
						res += " (upgrade)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.At.Format("15:04:05"), short(a.Peer), a.Plan, res, a.Took.Round(time.Millisecond))
				}
				tw.Flush()
			}
			if len(st.Swarms) > 0 {
				fmt.Println()
				tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "EXCHANGING\tAS\tPIECES\tPEERS\tUPLOADING TO\tUPLOADED")
				for _, s := range st.Swarms {
					name := s.Name
					if name == "" {
						name = short(s.ContentID)
					}
					fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%d\t%s\n", name, s.Role, s.Have, s.Pieces, s.Peers, s.Unchoked, humanBytes(s.Uploaded))
				}
				tw.Flush()
			}
			for _, d := range st.Downloads {
				fmt.Printf("downloading %s: %s, %d/%d pieces from %d sources\n", d.Name, d.State, d.Have, d.Pieces, d.Active)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print status as JSON")
	return cmd
}

func short(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

func rescanCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rescan",
		Short: "Rescan the shared folder now and publish what changed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if err := localapi.NewClient(g.dataDir).Rescan(ctx); err != nil {
				return explain(err)
			}
			fmt.Fprintln(os.Stderr, "rescanned")
			return nil
		},
	}
}

// natLine says what the daemon learnt of its network.
func natLine(sn apitype.SupernodeStatus) string {
	switch {
	case sn.Public:
		return "none: publicly reachable (the supernode dialled back)"
	case sn.NAT != "" && sn.NAT != "unknown":
		m := ""
		if sn.Mapping != "" && sn.Mapping != sn.NAT {
			m = ", STUN mapping " + sn.Mapping
		}
		return sn.NAT + m
	case sn.Mapping != "":
		return sn.Mapping + " (from STUN; not confirmed by the supernode yet)"
	}
	return "unknown yet"
}
