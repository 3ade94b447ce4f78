//! `[connections.NAME]`: addresses, IKE proposals, identities, retransmission, lifetimes,
//! DPD, fragmentation, NAT-T; its children are in `children.rs`.
use super::range::{
    check_base, DPD_DELAY, FRAGMENT_SIZE, LIFE_TIME, NAT_KEEPALIVE, PORT, RAND_TIME, REAUTH_TIME,
    REKEY_TIME, RETRANSMIT_TIMEOUT, RETRANSMIT_TRIES,
};
use super::raw::{RawConn, RawEncap};
use super::secrets::{psk_for, SecretEntry};
use super::{nonzero, ConfigError, Ctx};
use fs_ike::{ConnConfig, DpdAction, RetransmitConfig};
use fs_wire::id::Identity;
use std::net::IpAddr;
use std::time::Duration;

pub(super) fn parse(
    ctx: &Ctx,
    cname: &str,
    c: &RawConn,
    secrets: &[SecretEntry],
) -> Result<ConnConfig, ConfigError> {
    let p = format!("connections.{cname}");
    let addrs = |field: &str, v: &[String]| -> Result<Vec<IpAddr>, ConfigError> {
        v.iter()
            .enumerate()
            .map(|(i, a)| {
                a.trim().parse::<IpAddr>().map_err(|_| {
                    ctx.err(
                        format!("{p}.{field}[{i}]"),
                        format!("invalid IP address {a:?}"),
                    )
                })
            })
            .collect()
    };
    let local_addrs = addrs("local_addrs", &c.local_addrs)?;
    let remote_addrs = addrs("remote_addrs", &c.remote_addrs)?;
    let remote_port = PORT
        .check(ctx, &format!("{p}.remote_port"), c.remote_port)?
        .unwrap_or(500);
    let proposals = c
        .proposals
        .clone()
        .unwrap_or_else(|| vec!["aes256gcm16-prfsha256-x25519".to_string()]);
    if proposals.is_empty() {
        return Err(ctx.err(
            format!("{p}.proposals"),
            "at least one proposal is required",
        ));
    }
    let mut ike_proposals = Vec::new();
    for (i, s) in proposals.iter().enumerate() {
        ike_proposals.push(
            fs_crypto::proposal::parse_ike_proposal(s)
                .map_err(|e| ctx.err(format!("{p}.proposals[{i}]"), e.to_string()))?,
        );
    }
    for (side, auth) in [("local", &c.local.auth), ("remote", &c.remote.auth)] {
        if let Some(a) = auth {
            if a != "psk" {
                return Err(ctx.err(
                    format!("{p}.{side}.auth"),
                    format!("unsupported auth {a:?} (only \"psk\")"),
                ));
            }
        }
    }
    let local_id = match &c.local.id {
        Some(id) if !id.trim().is_empty() => Identity::from_config(id.trim()),
        Some(_) => return Err(ctx.err(format!("{p}.local.id"), "empty identity")),
        None => match local_addrs.first() {
            Some(a) => Identity::from_config(&a.to_string()),
            None => {
                return Err(ctx.err(
                    format!("{p}.local.id"),
                    "required when local_addrs is empty",
                ))
            }
        },
    };
    let remote_id = match &c.remote.id {
        Some(id) if !id.trim().is_empty() => Some(Identity::from_config(id.trim())),
        Some(_) => return Err(ctx.err(format!("{p}.remote.id"), "empty identity")),
        None => None,
    };
    let psk = psk_for(ctx, &p, c, &local_id, remote_id.as_ref(), secrets)?;
    let mut rt = RetransmitConfig::default();
    if let Some(t) = RETRANSMIT_TIMEOUT.check(
        ctx,
        &format!("{p}.retransmit_timeout"),
        &c.retransmit_timeout,
    )? {
        rt.timeout = t;
    }
    if let Some(n) =
        RETRANSMIT_TRIES.check(ctx, &format!("{p}.retransmit_tries"), c.retransmit_tries)?
    {
        rt.tries = n;
    }
    if let Some(b) = check_base(ctx, &format!("{p}.retransmit_base"), c.retransmit_base)? {
        rt.base = b;
    }
    let rekey_time = nonzero(
        REKEY_TIME.check(ctx, &format!("{p}.rekey_time"), &c.rekey_time)?,
        Some(Duration::from_secs(4 * 3600)),
    );
    let dpd_delay = nonzero(
        DPD_DELAY.check(ctx, &format!("{p}.dpd_delay"), &c.dpd_delay)?,
        None,
    );
    let dpd_action = match c.dpd_action.as_deref().unwrap_or("clear") {
        "clear" => DpdAction::Clear,
        "restart" => DpdAction::Restart,
        "trap" => DpdAction::Trap,
        a => {
            return Err(ctx.err(
                format!("{p}.dpd_action"),
                format!("invalid dpd_action {a:?} (clear | restart | trap)"),
            ))
        }
    };
    // RFC 7383 2.5.1: IP datagram size of IKE fragments (strongSwan's default 1280).
    let fragment_size = FRAGMENT_SIZE
        .check(ctx, &format!("{p}.fragment_size"), c.fragment_size)?
        .unwrap_or(fs_ike::config::DEFAULT_FRAGMENT_SIZE);
    // RFC 3948 4: keepalives from the NATed side (strongSwan's keep_alive, default 20s).
    let nat_keepalive = nonzero(
        NAT_KEEPALIVE.check(ctx, &format!("{p}.nat_keepalive"), &c.nat_keepalive)?,
        Some(fs_ike::config::DEFAULT_NAT_KEEPALIVE),
    );
    let life_time = nonzero(
        LIFE_TIME.check(ctx, &format!("{p}.life_time"), &c.life_time)?,
        None,
    );
    let rand_time = RAND_TIME.check(ctx, &format!("{p}.rand_time"), &c.rand_time)?;
    // RFC 7296 2.8.3 (strongSwan's reauth_time, default off): when set it replaces the
    // IKE rekey, so rekey_time only matters without it.
    let reauth_time = nonzero(
        REAUTH_TIME.check(ctx, &format!("{p}.reauth_time"), &c.reauth_time)?,
        None,
    );
    if let (Some(r), Some(l)) = (reauth_time, life_time) {
        if r >= l {
            return Err(ctx.err(format!("{p}.reauth_time"), "must be less than life_time"));
        }
    }
    if let (Some(r), Some(l)) = (rekey_time, life_time) {
        if r >= l && reauth_time.is_none() {
            return Err(ctx.err(format!("{p}.rekey_time"), "must be less than life_time"));
        }
    }
    if dpd_action != DpdAction::Clear && remote_addrs.is_empty() {
        return Err(ctx.err(
            format!("{p}.dpd_action"),
            "restart/trap need a peer to initiate to: set remote_addrs",
        ));
    }

    let mut children = Vec::new();
    for (chname, ch) in &c.children {
        children.push(super::children::parse(
            ctx,
            &format!("{p}.children.{chname}"),
            chname,
            ch,
            !remote_addrs.is_empty(),
        )?);
    }
    if children.is_empty() {
        return Err(ctx.err(format!("{p}.children"), "at least one child is required"));
    }
    // encap: true = always ESP in UDP (fake NAT-D, like strongSwan `encap = yes`);
    // false = RFC 7296 2.23 only (UDP when a NAT is detected); "auto" (default) = also
    // UDP when the peer is a ferroswan that prefers it (both data planes get UDP GSO/GRO).
    let (force_encap, prefer_udp_encap) = match &c.encap {
        None => (false, true),
        Some(RawEncap::Bool(b)) => (*b, false),
        Some(RawEncap::Text(t)) if t == "auto" => (false, true),
        Some(RawEncap::Text(t)) => {
            return Err(ctx.err(
                format!("{p}.encap"),
                format!("invalid value {t:?} (true, false or \"auto\")"),
            ))
        }
    };
    // Uniqueness policy per remote identity (issue 9), strongSwan's `unique`.
    let unique = match c.unique.as_deref().unwrap_or("replace") {
        "no" => fs_ike::UniquePolicy::No,
        "never" => fs_ike::UniquePolicy::Never,
        "replace" => fs_ike::UniquePolicy::Replace,
        "keep" => fs_ike::UniquePolicy::Keep,
        u => {
            let why = format!("invalid unique {u:?} (no | never | replace | keep)");
            return Err(ctx.err(format!("{p}.unique"), why));
        }
    };
    Ok(ConnConfig {
        name: cname.to_string(),
        local_addrs,
        remote_addrs,
        remote_port,
        local_id,
        remote_id,
        psk,
        ike_proposals,
        children,
        retransmit: rt,
        force_encap,
        prefer_udp_encap,
        rekey_time,
        reauth_time,
        dpd_delay,
        dpd_action,
        fragmentation: c.fragmentation.unwrap_or(true),
        fragment_size,
        nat_keepalive,
        life_time,
        rand_time,
        unique,
    })
}
