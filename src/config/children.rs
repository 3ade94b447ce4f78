//! `[connections.NAME.children.CHILD]`: traffic selectors, ESP proposals, mode, start
//! action, replay window, lifetimes (time and volume).
use super::range::{LIFE_TIME, RAND_TIME, REKEY_TIME, REPLAY_WINDOW, VOLUME};
use super::raw::RawChild;
use super::{nonzero, ConfigError, Ctx};
use fs_ike::{ChildConfig, StartAction};
use fs_wire::ts::TrafficSelector;
use std::time::Duration;

/// `cp` is the child's path (`connections.s2s.children.net`); `can_initiate`: the
/// connection has a remote address (needed for start/trap).
pub(super) fn parse(
    ctx: &Ctx,
    cp: &str,
    chname: &str,
    ch: &RawChild,
    can_initiate: bool,
) -> Result<ChildConfig, ConfigError> {
    let ts = |field: &str, v: &[String]| -> Result<Vec<TrafficSelector>, ConfigError> {
        if v.is_empty() {
            return Err(ctx.err(
                format!("{cp}.{field}"),
                "at least one traffic selector is required",
            ));
        }
        // The TS payload counts its selectors in one octet (RFC 7296 3.13).
        if v.len() > 255 {
            return Err(ctx.err(
                format!("{cp}.{field}"),
                format!("at most 255 traffic selectors (got {})", v.len()),
            ));
        }
        v.iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse().map_err(|e: fs_wire::ts::TsParseError| {
                    ctx.err(format!("{cp}.{field}[{i}]"), e.to_string())
                })
            })
            .collect()
    };
    let local_ts = ts("local_ts", &ch.local_ts)?;
    let remote_ts = ts("remote_ts", &ch.remote_ts)?;
    let esp = ch
        .esp_proposals
        .clone()
        .unwrap_or_else(|| vec!["aes256gcm16".to_string()]);
    if esp.is_empty() {
        return Err(ctx.err(
            format!("{cp}.esp_proposals"),
            "at least one proposal is required",
        ));
    }
    let mut esp_proposals = Vec::new();
    for (i, s) in esp.iter().enumerate() {
        esp_proposals.push(
            fs_crypto::proposal::parse_esp_proposal(s)
                .map_err(|e| ctx.err(format!("{cp}.esp_proposals[{i}]"), e.to_string()))?,
        );
    }
    use fs_wire::Mode;
    let mode = match ch.mode.as_deref().unwrap_or("tunnel") {
        "tunnel" => Mode::Tunnel,
        "transport" => Mode::Transport,
        m => {
            return Err(ctx.err(
                format!("{cp}.mode"),
                format!("invalid mode {m:?} (tunnel | transport)"),
            ))
        }
    };
    let start_action = match ch.start_action.as_deref().unwrap_or("none") {
        "none" => StartAction::None,
        "start" => StartAction::Start,
        "trap" => StartAction::Trap,
        a => {
            return Err(ctx.err(
                format!("{cp}.start_action"),
                format!("invalid start_action {a:?} (none | start | trap)"),
            ))
        }
    };
    if start_action != StartAction::None && !can_initiate {
        return Err(ctx.err(
            format!("{cp}.start_action"),
            "start/trap need a peer to initiate to: set remote_addrs",
        ));
    }
    let replay_window = REPLAY_WINDOW
        .check(ctx, &format!("{cp}.replay_window"), ch.replay_window)?
        .unwrap_or(1024);
    let rekey = nonzero(
        REKEY_TIME.check(ctx, &format!("{cp}.rekey_time"), &ch.rekey_time)?,
        Some(Duration::from_secs(3600)),
    );
    let life_time = nonzero(
        LIFE_TIME.check(ctx, &format!("{cp}.life_time"), &ch.life_time)?,
        None,
    );
    let rand_time = RAND_TIME.check(ctx, &format!("{cp}.rand_time"), &ch.rand_time)?;
    let vol = |field: &str, v: Option<i64>| -> Result<u64, ConfigError> {
        Ok(VOLUME.check(ctx, &format!("{cp}.{field}"), v)?.unwrap_or(0))
    };
    let (rekey_bytes, life_bytes) = (
        vol("rekey_bytes", ch.rekey_bytes)?,
        vol("life_bytes", ch.life_bytes)?,
    );
    let (rekey_packets, life_packets) = (
        vol("rekey_packets", ch.rekey_packets)?,
        vol("life_packets", ch.life_packets)?,
    );
    for (what, soft, hard) in [
        ("bytes", rekey_bytes, life_bytes),
        ("packets", rekey_packets, life_packets),
    ] {
        if soft != 0 && hard != 0 && soft >= hard {
            return Err(ctx.err(
                format!("{cp}.rekey_{what}"),
                format!("must be less than life_{what} ({soft} >= {hard})"),
            ));
        }
    }
    if let (Some(r), Some(l)) = (rekey, life_time) {
        if r >= l {
            return Err(ctx.err(format!("{cp}.rekey_time"), "must be less than life_time"));
        }
    }
    Ok(ChildConfig {
        name: chname.to_string(),
        local_ts,
        remote_ts,
        esp_proposals,
        mode,
        start_action,
        replay_window,
        rekey_time: rekey,
        life_time,
        rand_time,
        rekey_bytes,
        rekey_packets,
        life_bytes,
        life_packets,
    })
}
