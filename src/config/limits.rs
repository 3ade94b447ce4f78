//! `[limits]`: responder DoS limits (RFC 7296 2.6), [`fs_ike::Limits`].
use super::range::{
    COOKIE_SECRET_LIFETIME, COOKIE_THRESHOLD, HALF_OPEN_MAX, HALF_OPEN_PER_SOURCE_MAX,
    HALF_OPEN_TIMEOUT, MAX_CHILDREN_PER_IKE_SA,
};
use super::raw::RawLimits;
use super::{ConfigError, Ctx};

pub(super) fn parse(ctx: &Ctx, rl: &RawLimits) -> Result<fs_ike::Limits, ConfigError> {
    let dl = fs_ike::Limits::default();
    Ok(fs_ike::Limits {
        max_children_per_ike_sa: MAX_CHILDREN_PER_IKE_SA
            .check(
                ctx,
                "limits.max_children_per_ike_sa",
                rl.max_children_per_ike_sa,
            )?
            .unwrap_or(dl.max_children_per_ike_sa),
        cookie_threshold: COOKIE_THRESHOLD
            .check(ctx, "limits.cookie_threshold", rl.cookie_threshold)?
            .unwrap_or(dl.cookie_threshold),
        half_open_max: HALF_OPEN_MAX
            .check(ctx, "limits.half_open_max", rl.half_open_max)?
            .unwrap_or(dl.half_open_max),
        half_open_per_source_max: HALF_OPEN_PER_SOURCE_MAX
            .check(
                ctx,
                "limits.half_open_per_source_max",
                rl.half_open_per_source_max,
            )?
            .unwrap_or(dl.half_open_per_source_max),
        half_open_timeout: HALF_OPEN_TIMEOUT
            .check(ctx, "limits.half_open_timeout", &rl.half_open_timeout)?
            .unwrap_or(dl.half_open_timeout),
        cookie_secret_lifetime: COOKIE_SECRET_LIFETIME
            .check(
                ctx,
                "limits.cookie_secret_lifetime",
                &rl.cookie_secret_lifetime,
            )?
            .unwrap_or(dl.cookie_secret_lifetime),
    })
}
