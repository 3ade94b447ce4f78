//! Wire capture.

use crate::*;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// wire capture
// ---------------------------------------------------------------------------------------

/// tcpdump on one interface of one namespace, written to a pcap; analysed with tshark.
pub struct Capture {
    pub pcap: PathBuf,
    proc_id: usize,
    reg: Arc<Registry>,
}

impl Capture {
    pub fn start(topo: &Topology, ns: &str, iface: &str, name: &str) -> Capture {
        let pcap = topo.dir.join(format!("{name}.pcap"));
        let errlog = topo.dir.join(format!("{name}.tcpdump.log"));
        let ef = fs::File::create(&errlog).unwrap();
        let mut cmd = ns_cmd(ns, "tcpdump");
        // -B: a 32 MB ring, so bursts of full-size ESP are not dropped while tcpdump writes
        cmd.args(["-Z", "root", "-U", "-B", "32768", "-n", "-i", iface, "-w"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(ef);
        let proc_id = topo.spawn(&format!("tcpdump {name}"), &mut cmd, libc::SIGINT);
        let cap = Capture {
            pcap,
            proc_id,
            reg: topo.reg.clone(),
        };
        let ok = poll(Duration::from_secs(10), || {
            if cap.reg.exited(cap.proc_id).is_some() {
                panic!("tcpdump on {ns}/{iface} exited: {}", read_lossy(&errlog));
            }
            read_lossy(&errlog).contains("listening on").then_some(())
        });
        assert!(
            ok.is_some(),
            "tcpdump on {ns}/{iface} not listening: {}",
            read_lossy(&errlog)
        );
        cap
    }

    /// Stop the capture (SIGINT, so the pcap is complete).
    pub fn stop(&self) {
        // let the last packets be written: libpcap hands tcpdump a ring block when it is
        // full or after its timeout, so wait until the file has not grown for 300 ms
        // (at most 5 s)
        let size = || fs::metadata(&self.pcap).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = size();
        loop {
            thread::sleep(Duration::from_millis(300));
            let now = size();
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        self.reg.stop(self.proc_id, Duration::from_secs(5));
    }

    /// Number of packets matching a tshark display filter.
    pub fn count(&self, filter: &str) -> usize {
        self.field(filter, "frame.number").len()
    }

    /// Total length on the wire (`frame.len`, not the captured part) of the frames matching
    /// `filter`. Unlike [`Capture::count`] it does not depend on how packets were batched: a
    /// UDP GSO super-packet is one frame on a veth capture.
    pub fn bytes(&self, filter: &str) -> u64 {
        self.field(filter, "frame.len")
            .iter()
            .map(|l| {
                l.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|e| panic!("tshark frame.len {l:?}: {e}"))
            })
            .sum()
    }

    /// The non-empty values of `field` for the frames matching `filter`.
    fn field(&self, filter: &str, field: &str) -> Vec<String> {
        let mut c = Command::new("tshark");
        c.arg("-n")
            .arg("-r")
            .arg(&self.pcap)
            .args(["-Y", filter, "-T", "fields", "-e", field]);
        let o = run_timeout(&mut c, Duration::from_secs(120));
        assert!(
            o.status.success(),
            "tshark -Y '{filter}' failed: {}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Human summary of the capture (first lines), for failure messages.
    pub fn summary(&self, lines: usize) -> String {
        let mut c = Command::new("tshark");
        c.arg("-n").arg("-r").arg(&self.pcap);
        let o = run_timeout(&mut c, Duration::from_secs(120));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .take(lines)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.reg.stop(self.proc_id, Duration::from_secs(3));
    }
}
