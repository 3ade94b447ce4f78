//! Routes towards the TUN device, reference-counted per prefix.
use fs_dataplane::route;
use ipnet::IpNet;
use std::collections::HashMap;
use tracing::{debug, warn};

/// Route reference counts towards the TUN device, changed over one rtnetlink socket.
pub(super) struct Routes {
    dev: String,
    /// Opened on the first change (after the privilege drop: `CAP_NET_ADMIN` is enough), and
    /// again after a socket error or an unreadable answer.
    nl: Option<route::Rtnl>,
    refs: HashMap<IpNet, usize>,
    /// Route MTU set on each installed route (None: the device's).
    mtus: HashMap<IpNet, Option<u32>>,
}

impl Routes {
    pub(super) fn new(dev: String) -> Self {
        Routes {
            dev,
            nl: None,
            refs: HashMap::new(),
            mtus: HashMap::new(),
        }
    }

    /// Run `f` on the socket, opening it if needed; drop it when it failed (not when the
    /// kernel refused a request), so the next change starts on a fresh one.
    fn with_nl<T>(
        nl: &mut Option<route::Rtnl>,
        f: impl FnOnce(&route::Rtnl) -> Result<T, route::RouteError>,
    ) -> Result<T, route::RouteError> {
        let sock = match nl {
            Some(s) => s,
            None => nl.insert(route::Rtnl::open()?),
        };
        let r = f(sock);
        if matches!(
            r,
            Err(route::RouteError::Socket(_) | route::RouteError::BadAnswer { .. })
        ) {
            *nl = None;
        }
        r
    }

    /// `route::egress_mtu` on the routes' socket when it is open.
    pub(super) fn egress_mtu(
        &self,
        dst: std::net::IpAddr,
    ) -> Result<(String, u32), route::RouteError> {
        match &self.nl {
            Some(nl) => nl.egress_mtu(dst),
            None => route::egress_mtu(dst),
        }
    }

    /// Take a reference on the route for `net`; installs it on the first one, and (re)sets
    /// its MTU when `mtu` is given and differs (the CHILD_SA's suite/encap determine it).
    pub(super) fn add(&mut self, net: IpNet, mtu: Option<u32>) {
        let c = self.refs.entry(net).or_insert(0);
        *c += 1;
        let first = *c == 1;
        if first || (mtu.is_some() && self.mtus.get(&net) != Some(&mtu)) {
            match Self::with_nl(&mut self.nl, |nl| nl.replace_mtu(net, &self.dev, mtu)) {
                Ok(()) => {
                    self.mtus.insert(net, mtu);
                    match mtu {
                        Some(m) => debug!("route {net} dev {} mtu {m} installed", self.dev),
                        None => debug!("route {net} dev {} installed", self.dev),
                    }
                }
                Err(e) => warn!("cannot install route {net} dev {}: {e}", self.dev),
            }
        }
    }
    pub(super) fn release(&mut self, net: IpNet) {
        if let Some(c) = self.refs.get_mut(&net) {
            *c -= 1;
            if *c == 0 {
                self.refs.remove(&net);
                self.mtus.remove(&net);
                if let Err(e) = Self::with_nl(&mut self.nl, |nl| nl.delete(net, &self.dev)) {
                    debug!("cannot remove route {net}: {e}");
                }
            }
        }
    }
    pub(super) fn remove_all(&mut self) {
        self.mtus.clear();
        for (net, _) in self.refs.drain() {
            let _ = Self::with_nl(&mut self.nl, |nl| nl.delete(net, &self.dev));
        }
    }
}

pub(super) fn nets_of(ts: &[fs_wire::ts::TrafficSelector]) -> Vec<IpNet> {
    ts.iter()
        .filter_map(|t| {
            let n = t.to_net();
            if n.is_none() {
                warn!("selector {t} is not a CIDR prefix: no route installed for it");
            }
            n
        })
        .collect()
}
