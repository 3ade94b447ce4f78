//! `[secrets]` and inline `local.psk`: PSKs as [`Secret`]s, the best-match lookup by
//! identities, and the warnings about weak or exposed secrets (short PSK; a file holding
//! secrets readable by group or others).
use super::raw::{RawConn, RawSecret};
use super::{ConfigError, Ctx};
use fs_crypto::Secret;
use fs_wire::id::Identity;
use std::collections::BTreeMap;
use std::path::Path;

/// PSKs shorter than this draw a warning (a guessable PSK gives away the tunnel to an
/// offline dictionary attack on one recorded IKE_AUTH).
pub const PSK_MIN_LEN: usize = 20;

/// One `[secrets.NAME]` entry.
pub(super) struct SecretEntry {
    pub ids: Vec<Identity>,
    pub value: Secret,
}

/// `0x...`/`0X...` = hex, anything else = the UTF-8 bytes as written.
fn decode(ctx: &Ctx, path: &str, s: &str) -> Result<Secret, ConfigError> {
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        hex::decode(h)
            .map(Secret::new)
            .map_err(|e| ctx.err(path, format!("invalid hex secret: {e}")))?
    } else {
        Secret::from_slice(s.as_bytes())
    };
    if v.is_empty() {
        return Err(ctx.err(path, "empty secret"));
    }
    if v.len() < PSK_MIN_LEN {
        ctx.warn(
            path,
            format!(
                "PSK is only {} bytes long; use at least {PSK_MIN_LEN} random bytes (e.g. 32, as \"0x...\" hex)",
                v.len()
            ),
        );
    }
    Ok(v)
}

/// Unix permission bits that let group or others read a file.
const GROUP_OTHER_READ: u32 = 0o044;

/// A warning if the file at `file` (holding secrets, named by `path` in the config) can be
/// read by group or others.
pub(super) fn check_mode(ctx: &Ctx, path: &str, file: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(file) {
        let mode = m.permissions().mode() & 0o777;
        if mode & GROUP_OTHER_READ != 0 {
            ctx.warn(
                path,
                format!(
                    "{what} {} is readable by group or others (mode {mode:04o}); chmod 600 it",
                    file.display()
                ),
            );
        }
    }
}

/// The `[secrets]` section. Also records, in `ctx`, which fields hold a secret (for the
/// permission check of the config file itself).
pub(super) fn parse(
    ctx: &Ctx,
    raw: &BTreeMap<String, RawSecret>,
    base_dir: &Path,
) -> Result<Vec<SecretEntry>, ConfigError> {
    let mut out = Vec::new();
    for (name, s) in raw {
        let p = format!("secrets.{name}");
        let value = match (&s.secret, &s.secret_file) {
            (Some(v), None) => {
                let fp = format!("{p}.secret");
                ctx.holds_secret(&fp);
                decode(ctx, &fp, &v.0)?
            }
            (None, Some(f)) => {
                let field = format!("{p}.secret_file");
                ctx.holds_secret(&field);
                let fp = base_dir.join(f);
                let v = std::fs::read_to_string(&fp)
                    .map(zeroize::Zeroizing::new)
                    .map_err(|e| ctx.err(&field, format!("cannot read {}: {e}", fp.display())))?;
                check_mode(ctx, &field, &fp, "secret file");
                decode(ctx, &field, v.trim_end_matches(['\n', '\r']))?
            }
            (Some(_), Some(_)) => {
                return Err(ctx.err(&p, "give either secret or secret_file, not both"))
            }
            (None, None) => return Err(ctx.err(&p, "missing secret (or secret_file)")),
        };
        let ids = s.ids.iter().map(|i| Identity::from_config(i)).collect();
        out.push(SecretEntry { ids, value });
    }
    Ok(out)
}

/// The PSK of connection `p` (`connections.NAME`): its inline `local.psk`, else the best
/// `[secrets]` match: an entry naming both ids, then one naming the remote id, then the local
/// id, then one with no ids (wildcard).
pub(super) fn psk_for(
    ctx: &Ctx,
    p: &str,
    c: &RawConn,
    local_id: &Identity,
    remote_id: Option<&Identity>,
    secrets: &[SecretEntry],
) -> Result<Secret, ConfigError> {
    if let Some(s) = &c.local.psk {
        let fp = format!("{p}.local.psk");
        ctx.holds_secret(&fp);
        return decode(ctx, &fp, &s.0);
    }
    let score = |ids: &Vec<Identity>| -> Option<u8> {
        if ids.is_empty() {
            return Some(0);
        }
        let l = ids.contains(local_id);
        let r = remote_id.is_some_and(|r| ids.contains(r));
        match (l, r) {
            (true, true) => Some(3),
            (false, true) => Some(2),
            (true, false) => Some(1),
            _ => None,
        }
    };
    let best = secrets
        .iter()
        .filter_map(|e| score(&e.ids).map(|s| (s, &e.value)))
        .max_by_key(|(s, _)| *s);
    match best {
        Some((_, v)) => Ok(v.duplicate()),
        None => {
            let r = c.remote.id.as_deref().unwrap_or("%any");
            let l = c
                .local
                .id
                .clone()
                .unwrap_or_else(|| format!("{local_id:?}"));
            Err(ctx.err(
                p,
                format!("no PSK: add [secrets.NAME] with ids = [\"{l}\", \"{r}\"] or local.psk"),
            ))
        }
    }
}
