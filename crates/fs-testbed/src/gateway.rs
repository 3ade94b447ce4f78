//! Either gateway.

use crate::*;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// either gateway
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    StrongSwan,
    Ferroswan,
}

pub enum Gw {
    Ss(StrongSwan),
    Fs(Ferroswan),
}

/// The INSTALLED CHILD_SA of CONN on a ferroswan gateway (`status --json`).
fn installed_child(f: &Ferroswan) -> serde_json::Value {
    let sa = f
        .wait_for_sa(CONN, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    children(&sa)
        .into_iter()
        .find(|c| c["state"] == "INSTALLED")
        .unwrap_or_else(|| panic!("ferroswan {}: no INSTALLED CHILD_SA: {sa}", f.name))
}

impl Gw {
    pub fn start(kind: Impl, topo: &Topology, ns: &str, name: &str, p: &GwParams) -> Gw {
        Self::start_opts(kind, topo, ns, name, p, &[])
    }

    /// Like `start`; `fs_opts` are template overrides for a ferroswan gateway (a strongSwan
    /// one ignores them).
    pub fn start_opts(
        kind: Impl,
        topo: &Topology,
        ns: &str,
        name: &str,
        p: &GwParams,
        fs_opts: &[(&str, &str)],
    ) -> Gw {
        match kind {
            Impl::StrongSwan => Gw::Ss(StrongSwan::start(topo, ns, name, p)),
            Impl::Ferroswan => Gw::Fs(Ferroswan::start_opts(topo, ns, name, p, fs_opts)),
        }
    }

    /// Bring the tunnel up from this side: Err(text of the failure).
    pub fn initiate(&self) -> Result<String, String> {
        match self {
            Gw::Ss(s) => {
                let o = s.initiate();
                if o.status.success() {
                    Ok(text(&o))
                } else {
                    Err(format!(
                        "swanctl --initiate on {} failed ({}): {}",
                        s.name,
                        o.status,
                        text(&o)
                    ))
                }
            }
            Gw::Fs(f) => f.up(CONN),
        }
    }

    pub fn wait_established(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Gw::Ss(s) => s.wait_for_sa(timeout).map(|_| ()),
            Gw::Fs(f) => f.wait_for_sa(CONN, timeout).map(|_| ()),
        }
    }

    pub fn wait_no_sa(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Gw::Ss(s) => s.wait_no_sa(timeout),
            Gw::Fs(f) => f.wait_no_sa(timeout),
        }
    }

    /// After traffic: the CHILD_SA counted bytes and packets in both directions.
    pub fn assert_traffic_counted(&self) {
        match self {
            Gw::Ss(s) => {
                let (bi, pi, bo, po) = s.child_counters();
                assert!(
                    bi > 0 && pi > 0 && bo > 0 && po > 0,
                    "strongSwan {}: CHILD_SA counters not all > 0 (in {bi} B/{pi} pkts, out {bo} B/{po} pkts):\n{}",
                    s.name,
                    s.list_sas()
                );
            }
            Gw::Fs(f) => {
                let c = installed_child(f);
                for k in ["bytes_in", "packets_in", "bytes_out", "packets_out"] {
                    let v = c[k].as_u64().unwrap_or(0);
                    assert!(
                        v > 0,
                        "ferroswan {}: child {k} = {} (want > 0); child: {c}",
                        f.name,
                        c[k]
                    );
                }
            }
        }
    }

    /// (bytes in, bytes out) of the installed CHILD_SA.
    pub fn child_bytes(&self) -> (u64, u64) {
        match self {
            Gw::Ss(s) => {
                let (bi, _, bo, _) = s.child_counters();
                (bi, bo)
            }
            Gw::Fs(f) => {
                let c = installed_child(f);
                let get = |k: &str| {
                    c[k].as_u64()
                        .unwrap_or_else(|| panic!("ferroswan {}: child without {k}: {c}", f.name))
                };
                (get("bytes_in"), get("bytes_out"))
            }
        }
    }

    pub fn log(&self) -> String {
        match self {
            Gw::Ss(s) => s.log(),
            Gw::Fs(f) => f.log(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Gw::Ss(s) => &s.name,
            Gw::Fs(f) => &f.name,
        }
    }
}
