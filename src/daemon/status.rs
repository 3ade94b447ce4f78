//! Building the typed [`StatusReport`] of `ferroswan status`: fs-ike's view of the SAs with
//! the data plane's counters of each CHILD_SA.
use super::Daemon;
use crate::status::{ChildTraffic, IkeSaStatus, StatusReport};
use std::time::Instant;

impl Daemon {
    pub(super) fn status_report(&self, now: Instant) -> StatusReport {
        let tables = self.dp.tables();
        let ike_sas = self
            .endpoint
            .status(now)
            .into_iter()
            .map(|sa| {
                IkeSaStatus::new(sa, |ch| {
                    let (i, o) = tables.sa_counters(ch.spi_in, ch.spi_out);
                    let (i, o) = (i.unwrap_or_default(), o.unwrap_or_default());
                    ChildTraffic {
                        bytes_in: i.bytes,
                        packets_in: i.packets,
                        bytes_out: o.bytes,
                        packets_out: o.packets,
                        dropped_replay: i.dropped_replay.saturating_add(o.dropped_replay),
                        dropped_auth: i.dropped_auth.saturating_add(o.dropped_auth),
                        dropped_malformed: i.dropped_malformed.saturating_add(o.dropped_malformed),
                    }
                })
            })
            .collect();
        StatusReport {
            ike_sas,
            counters: self
                .dp
                .counters()
                .snapshot()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ike_counters: ike_counters(self.endpoint.stats()),
            tun_mtu: self.tun_mtu,
            tun_mtu_derivation: self.tun_mtu_how.clone(),
            tun_queue_packets: self.dp.tun_queue_packets(),
        }
    }
}

/// fs-ike's counters by field name (all of them are `u64`).
fn ike_counters(stats: &fs_ike::IkeStats) -> std::collections::BTreeMap<String, u64> {
    serde_json::to_value(stats)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fs-ike counter is in the report, under its field name.
    #[test]
    fn ike_counters_by_name() {
        let stats = fs_ike::IkeStats {
            dropped_malformed: 3,
            cookies_sent: 9,
            half_open_peak: u64::MAX,
            ..Default::default()
        };
        let m = ike_counters(&stats);
        assert_eq!(m.get("dropped_malformed"), Some(&3));
        assert_eq!(m.get("cookies_sent"), Some(&9));
        assert_eq!(m.get("half_open_peak"), Some(&u64::MAX));
        assert_eq!(m.get("dropped_integrity"), Some(&0));
        let fields = serde_json::to_value(&stats).unwrap();
        assert_eq!(m.len(), fields.as_object().unwrap().len());
    }
}
