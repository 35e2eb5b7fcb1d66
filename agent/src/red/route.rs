//! Raw URL path → low-cardinality route template (`/users/42` → `/users/{id}`).
//!
//! A segment collapses to `{id}` when it looks like an identifier rather than a name:
//! numbers, UUIDs, hex hashes, e-mail-like values, and long random-looking tokens. A file
//! extension is kept (`/img/123.png` → `/img/{id}.png`).

/// Placeholder for a collapsed segment.
pub const ID: &str = "{id}";
/// At most this many segments are kept; the rest become one `{rest}` placeholder.
pub const MAX_SEGMENTS: usize = 12;
/// Longest segment kept verbatim; longer ones collapse.
pub const MAX_SEGMENT_LEN: usize = 64;

/// Derives the route template of a request path (without its query string).
pub fn template(path: &str) -> String {
    if path.is_empty() || path == "/" {
        return "/".to_owned();
    }
    if !path.starts_with('/') {
        // `*` (OPTIONS *) or an authority (CONNECT host:port): no route to speak of.
        return if path == "*" {
            "*".to_owned()
        } else {
            "/".to_owned()
        };
    }
    let mut out = String::with_capacity(path.len().min(128));
    for (i, segment) in path[1..].split('/').enumerate() {
        out.push('/');
        if i == MAX_SEGMENTS {
            out.push_str("{rest}");
            break;
        }
        push_segment(&mut out, segment);
    }
    out
}

fn push_segment(out: &mut String, segment: &str) {
    if segment.is_empty() {
        return;
    }
    if is_id(segment) {
        out.push_str(ID);
        return;
    }
    if let Some((stem, ext)) = segment.rsplit_once('.')
        && !stem.is_empty()
        && (1..=5).contains(&ext.len())
        && ext.bytes().all(|b| b.is_ascii_alphanumeric())
        && is_id(stem)
    {
        out.push_str(ID);
        out.push('.');
        out.push_str(ext);
        return;
    }
    out.push_str(segment);
}

/// Whether one path segment looks like an identifier.
pub fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() > MAX_SEGMENT_LEN {
        return true;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == b.len() {
        return true; // 42, 2024
    }
    if is_uuid(b) {
        return true;
    }
    if b.contains(&b'@') || (b.contains(&b'%') && b.len() >= 16) {
        return true; // e-mail addresses, long percent-encoded values
    }
    // Numbers with separators: dates, versions-as-ids, ranges (2024-01-31, 10.0.0.1, 1_000).
    if digits > 0
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.' | b':'))
    {
        return true;
    }
    // Hex hashes and object ids (5f2b9c1e, a94a8fe5ccb19ba61c4c0873d391e987982fbbd3).
    if b.len() >= 8 && digits > 0 && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    looks_random(b, digits)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Long tokens mixing letters and digits (base64/base62 ids, ULIDs, session tokens), or
/// with many letter/digit alternations. Words with a version number (`oauth2`, `v1`,
/// `html5-player`) stay.
fn looks_random(b: &[u8], digits: usize) -> bool {
    if b.len() < 16 || digits < 2 {
        return false;
    }
    let mut switches = 0;
    let mut prev_digit = b[0].is_ascii_digit();
    for c in &b[1..] {
        if c.is_ascii_alphanumeric() {
            let d = c.is_ascii_digit();
            if d != prev_digit {
                switches += 1;
            }
            prev_digit = d;
        }
    }
    let upper = b.iter().filter(|c| c.is_ascii_uppercase()).count();
    let lower = b.iter().filter(|c| c.is_ascii_lowercase()).count();
    switches >= 4 || (digits >= 3 && upper > 0 && lower > 0) || digits * 4 >= b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::empty("", "/")]
    #[case::root("/", "/")]
    #[case::asterisk("*", "*")]
    #[case::authority("example.com:443", "/")]
    #[case::plain("/api/users", "/api/users")]
    #[case::trailing_slash("/api/users/", "/api/users/")]
    #[case::numeric("/api/users/42", "/api/users/{id}")]
    #[case::two_numbers("/orders/1001/items/7", "/orders/{id}/items/{id}")]
    #[case::uuid("/u/3fa85f64-5717-4562-b3fc-2c963f66afa6/x", "/u/{id}/x")]
    #[case::uuid_upper("/u/3FA85F64-5717-4562-B3FC-2C963F66AFA6", "/u/{id}")]
    #[case::sha1("/commit/a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "/commit/{id}")]
    #[case::short_hex("/obj/5f2b9c1e", "/obj/{id}")]
    #[case::hex_word_kept("/recipes/deadbeef", "/recipes/deadbeef")]
    #[case::date("/reports/2024-01-31", "/reports/{id}")]
    #[case::ip("/hosts/10.0.0.1", "/hosts/{id}")]
    #[case::extension("/img/123.png", "/img/{id}.png")]
    #[case::name_with_extension("/static/app.js", "/static/app.js")]
    #[case::version_kept("/api/v1/users", "/api/v1/users")]
    #[case::oauth2_kept("/oauth2callback", "/oauth2callback")]
    #[case::words_kept(
        "/very-long-but-readable-segment-name",
        "/very-long-but-readable-segment-name"
    )]
    #[case::ulid("/events/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/events/{id}")]
    #[case::base62_token("/s/aZ3kP9qLm2XwT7vB", "/s/{id}")]
    #[case::email("/users/alice@example.com/profile", "/users/{id}/profile")]
    #[case::percent_long("/search/%E4%BD%A0%E5%A5%BD%E4%B8%96", "/search/{id}")]
    #[case::double_slash("//a//1", "//a//{id}")]
    #[case::huge_segment(&format!("/x/{}", "a".repeat(100)), "/x/{id}")]
    #[case::many_segments(&"/a".repeat(20), &format!("{}/{{rest}}", "/a".repeat(12)))]
    fn templates(#[case] path: &str, #[case] expected: &str) {
        assert_eq!(template(path), expected);
    }
}
