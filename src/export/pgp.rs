//! Just enough OpenPGP packet parsing to tell which keys made the GPG
//! signatures attached to a commit (`ostree.gpgsigs` in its detached metadata).
//!
//! libostree refuses to add a second signature by the same key only when that
//! key is in the *repository's* keyring, which an export repository usually
//! lacks; so without this every unchanged rerun would append another
//! signature. We read the issuer subpackets (fingerprint, type 33; key id,
//! type 16) of v4 signatures and the key id of v3 ones (RFC 4880 §5.2,
//! RFC 9580 §5.2.3). No verification happens here. Hand-written because the
//! OpenPGP crates (sequoia, pgp) are far larger than these few lines.
//!
//! Not for: checking signatures (libostree/gpgme do that).

/// Issuers (upper-case hex fingerprints or key ids) of the signature packets in `data`.
pub fn signature_issuers(data: &[u8]) -> Vec<String> {
    let mut issuers = Vec::new();
    let mut rest = data;
    while let Some((tag, body, next)) = next_packet(rest) {
        if tag == 2 {
            issuers.extend(issuers_of_signature(body));
        }
        rest = next;
    }
    issuers
}

/// Whether a user-given key id (fingerprint, long or short id, optionally
/// `0x`-prefixed or with spaces) names one of `issuers`. A user id (name or
/// e-mail) never matches: that needs the keyring.
pub fn key_matches(key_id: &str, issuers: &[String]) -> bool {
    let wanted: String = key_id
        .trim()
        .trim_start_matches("0x")
        .trim_start_matches("0X")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if wanted.len() < 8 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    issuers.iter().any(|issuer| {
        issuer.ends_with(&wanted)
            || (wanted.len() > issuer.len() && wanted.ends_with(issuer.as_str()))
    })
}

/// (tag, body, rest) of the first packet, or None at the end or on garbage.
fn next_packet(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&first, rest) = data.split_first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let (tag, len, rest) = if first & 0x40 != 0 {
        let (len, rest) = new_format_length(rest)?;
        (first & 0x3f, len, rest)
    } else {
        let tag = (first >> 2) & 0x0f;
        let (len, rest) = match first & 0x03 {
            0 => (usize::from(*rest.first()?), &rest[1..]),
            1 => (
                usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
                rest.get(2..)?,
            ),
            2 => (be_u32(rest)?, rest.get(4..)?),
            _ => (rest.len(), rest),
        };
        (tag, len, rest)
    };
    if len > rest.len() {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// A new-format packet length or a subpacket length (same encoding, without partial lengths).
fn new_format_length(data: &[u8]) -> Option<(usize, &[u8])> {
    let o1 = *data.first()?;
    match o1 {
        0..=191 => Some((usize::from(o1), &data[1..])),
        192..=254 => {
            let o2 = *data.get(1)?;
            Some((
                (usize::from(o1) - 192) * 256 + usize::from(o2) + 192,
                data.get(2..)?,
            ))
        }
        255 => Some((be_u32(&data[1..])?, data.get(5..)?)),
    }
}

fn be_u32(data: &[u8]) -> Option<usize> {
    let bytes: [u8; 4] = data.get(..4)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(bytes)).ok()
}

fn issuers_of_signature(body: &[u8]) -> Vec<String> {
    match body.first() {
        // v3: version, 5, type, time(4), key id(8), ...
        Some(3) => body.get(7..15).map(hex_upper).into_iter().collect(),
        Some(4) | Some(5) => {
            let mut out = Vec::new();
            let mut pos = 4;
            for _ in 0..2 {
                let Some(len_bytes) = body.get(pos..pos + 2) else {
                    break;
                };
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                let Some(area) = body.get(pos + 2..pos + 2 + len) else {
                    break;
                };
                out.extend(issuers_in_subpackets(area));
                pos += 2 + len;
            }
            out
        }
        _ => Vec::new(),
    }
}

fn issuers_in_subpackets(mut area: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((len, rest)) = new_format_length(area) {
        if len == 0 || len > rest.len() {
            break;
        }
        let (sub, next) = rest.split_at(len);
        match sub[0] & 0x7f {
            16 if sub.len() == 9 => out.push(hex_upper(&sub[1..])),
            // version byte, then the fingerprint
            33 if sub.len() > 2 => out.push(hex_upper(&sub[2..])),
            _ => {}
        }
        area = next;
    }
    out
}

fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v4 signature packet (old-format header) with an issuer fingerprint in
    /// the hashed area and an issuer key id in the unhashed area.
    fn v4_signature(fpr: &[u8; 20]) -> Vec<u8> {
        let mut hashed = vec![22, 33, 4];
        hashed.extend_from_slice(fpr);
        let mut unhashed = vec![9, 16];
        unhashed.extend_from_slice(&fpr[12..]);
        let mut body = vec![4, 0x00, 22, 8];
        body.extend_from_slice(&(hashed.len() as u16).to_be_bytes());
        body.extend_from_slice(&hashed);
        body.extend_from_slice(&(unhashed.len() as u16).to_be_bytes());
        body.extend_from_slice(&unhashed);
        body.extend_from_slice(&[0xab, 0xcd, 0, 1, 0]); // hash prefix + MPI stub
        let mut packet = vec![0x88, body.len() as u8]; // old format, tag 2, 1-byte length
        packet.extend_from_slice(&body);
        packet
    }

    #[test]
    fn finds_issuers_and_matches_key_ids() {
        let fpr: [u8; 20] = core::array::from_fn(|i| i as u8 + 0xa0);
        let fpr_hex = hex::encode_upper(fpr);
        let mut data = v4_signature(&fpr);
        data.extend(v4_signature(&[0x11; 20]));
        let issuers = signature_issuers(&data);
        assert_eq!(issuers.len(), 4);
        assert_eq!(issuers[0], fpr_hex);
        assert_eq!(issuers[1], fpr_hex[24..]);
        assert!(key_matches(&fpr_hex, &issuers));
        assert!(key_matches(&fpr_hex.to_lowercase(), &issuers));
        assert!(key_matches(&format!("0x{}", &fpr_hex[24..]), &issuers));
        assert!(key_matches(&fpr_hex[32..], &issuers));
        assert!(!key_matches("DEADBEEFDEADBEEF", &issuers));
        assert!(!key_matches("someone@example.com", &issuers));
        // Only the key id is known: a full fingerprint still matches its tail.
        let only_id = vec![fpr_hex[24..].to_string()];
        assert!(key_matches(&fpr_hex, &only_id));
    }

    #[test]
    fn garbage_is_harmless() {
        assert!(signature_issuers(b"").is_empty());
        assert!(signature_issuers(b"\x00\x01\x02").is_empty());
        assert!(signature_issuers(b"\x88\xff\x04").is_empty());
        assert!(signature_issuers(&[0xc2, 0xff, 0xff, 0xff, 0xff, 0xff]).is_empty());
    }
}
