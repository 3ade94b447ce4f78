//! The status report of `ferroswan status`.
use super::Daemon;
use serde_json::{json, Value};
use std::time::Instant;

impl Daemon {
    pub(super) fn status_json(&self, now: Instant) -> Value {
        let tables = self.dp.tables();
        let sas: Vec<Value> = self
            .endpoint
            .status(now)
            .into_iter()
            .map(|sa| {
                let id = sa.id;
                let mut v = serde_json::to_value(&sa).unwrap_or(Value::Null);
                if let Some(children) = v.get_mut("child_sas").and_then(Value::as_array_mut) {
                    for ch in children.iter_mut() {
                        let spi = |k: &str| -> Option<u32> {
                            let s = ch.get(k)?.as_str()?;
                            let s = s.trim_start_matches("0x");
                            u32::from_str_radix(s, 16).ok()
                        };
                        let spis = match (spi("spi_in"), spi("spi_out")) {
                            (Some(i), Some(o)) => Some((i, o)),
                            _ => {
                                let name = ch.get("name").and_then(Value::as_str).unwrap_or("");
                                self.installed
                                    .iter()
                                    .rev()
                                    .find(|c| c.ike_sa == id && c.child == name)
                                    .map(|c| (c.spi_in, c.spi_out))
                            }
                        };
                        let (i, o) = spis
                            .map(|(i, o)| tables.sa_counters(i, o))
                            .unwrap_or((None, None));
                        let (i, o) = (i.unwrap_or_default(), o.unwrap_or_default());
                        if let Some(obj) = ch.as_object_mut() {
                            obj.insert("bytes_in".into(), json!(i.bytes));
                            obj.insert("packets_in".into(), json!(i.packets));
                            obj.insert("bytes_out".into(), json!(o.bytes));
                            obj.insert("packets_out".into(), json!(o.packets));
                            obj.insert(
                                "dropped_replay".into(),
                                json!(i.dropped_replay + o.dropped_replay),
                            );
                            obj.insert(
                                "dropped_auth".into(),
                                json!(i.dropped_auth + o.dropped_auth),
                            );
                            obj.insert(
                                "dropped_malformed".into(),
                                json!(i.dropped_malformed + o.dropped_malformed),
                            );
                        }
                    }
                }
                v
            })
            .collect();
        json!({
            "ike_sas": sas,
            "counters": self.dp.counters().snapshot(),
            "ike_counters": self.endpoint.stats(),
            "tun_mtu": self.tun_mtu,
            "tun_mtu_derivation": self.tun_mtu_how,
            "tun_queue_packets": self.dp.tun_queue_packets(),
        })
    }
}
