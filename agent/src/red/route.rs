//! Raw URL path → low-cardinality route template (`/users/42` → `/users/{id}`).
//!
//! A segment collapses to `{id}` when it looks like an identifier or free text rather than a
//! name: numbers, UUIDs, hex hashes, anything with a byte outside `[A-Za-z0-9_-]` (e-mail
//! addresses, `john.doe`, percent-encoded text, `~user`), several digits among letters, and
//! long random-looking tokens. A known file extension is kept (`/img/123.png` →
//! `/img/{id}.png`, `/static/app.js` stays). A response that went through no route (404)
//! has no template at all: see [`status_has_route`].

/// Placeholder for a collapsed segment.
pub const ID: &str = "{id}";
/// At most this many segments are kept; the rest become one `{rest}` placeholder.
pub const MAX_SEGMENTS: usize = 12;
/// Longest segment kept verbatim; longer ones collapse.
pub const MAX_SEGMENT_LEN: usize = 64;

/// Extensions of static files kept in a template (compared without case).
const FILE_EXTENSIONS: &[&str] = &[
    "html", "htm", "js", "mjs", "css", "map", "json", "xml", "txt", "csv", "md", "yaml", "yml",
    "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "woff", "woff2", "ttf", "otf",
    "eot", "pdf", "zip", "gz", "tgz", "wasm", "mp3", "mp4", "webm", "php", "jsp", "asp", "aspx",
];

/// Whether a response with this status went through a route of the server, so that the
/// request's template is a route. Not for 404 (no route matched: scanners and typos would
/// make a route of every path they try) nor 414 (refused before routing). Other 4xx come
/// from routes or from middleware in front of them (401, 403, 405 for a path that exists,
/// 400, 429) and keep theirs. Unknown (no response) keeps it too: the request named it.
pub fn status_has_route(status: Option<u16>) -> bool {
    !matches!(status, Some(404 | 414))
}

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
    if let Some((stem, ext)) = segment.rsplit_once('.')
        && !stem.is_empty()
        && FILE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))
    {
        out.push_str(if is_id(stem) { ID } else { stem });
        out.push('.');
        out.push_str(ext);
        return;
    }
    out.push_str(if is_id(segment) { ID } else { segment });
}

/// Whether one path segment looks like an identifier or free text rather than a name.
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
    // Names are words: e-mail addresses, dotted names (john.doe), percent-encoded or
    // form-encoded text (hello%20world, a+b), ~users, `key=value` and non-ASCII are values.
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
    {
        return true;
    }
    // Numbers with separators: dates, ranges (2024-01-31, 1_000).
    if digits > 0
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'_'))
    {
        return true;
    }
    // Several digits among letters (user123, a1b2): numbered values, not names (v1, oauth2,
    // v10, h2c stay).
    if digits >= 3 || (digits >= 2 && digit_runs(b) >= 2) {
        return true;
    }
    // Hex hashes and object ids (5f2b9c1e, a94a8fe5ccb19ba61c4c0873d391e987982fbbd3).
    if b.len() >= 8 && digits > 0 && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    looks_random(b, digits)
}

/// Runs of consecutive digits.
fn digit_runs(b: &[u8]) -> usize {
    let mut runs = 0;
    let mut prev = false;
    for c in b {
        let d = c.is_ascii_digit();
        if d && !prev {
            runs += 1;
        }
        prev = d;
    }
    runs
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
    // Free text and values: bounded, whatever users type.
    #[case::dotted_name("/u/john.doe", "/u/{id}")]
    #[case::dotted_name_upper("/u/John.Doe/posts", "/u/{id}/posts")]
    #[case::percent_short("/search/hello%20world", "/search/{id}")]
    #[case::percent_tiny("/a%3Bb", "/{id}")]
    #[case::plus_text("/search/hello+world", "/search/{id}")]
    #[case::tilde_user("/~alice/pub", "/{id}/pub")]
    #[case::key_value("/filter/color=red", "/filter/{id}")]
    #[case::colon_method("/v1/users:batchGet", "/v1/{id}")]
    #[case::non_ascii("/wiki/café", "/wiki/{id}")]
    #[case::non_ascii_only("/tag/日本", "/tag/{id}")]
    #[case::numbered_name("/u/user123", "/u/{id}")]
    #[case::alternating("/k/a1b2", "/k/{id}")]
    #[case::sha256_word("/hash/sha256", "/hash/{id}")]
    #[case::two_digits_one_run_kept("/items/page10", "/items/page10")]
    #[case::v10_kept("/api/v10/x", "/api/v10/x")]
    #[case::h2c_kept("/h2c", "/h2c")]
    #[case::underscore_name_kept("/api/user_profile", "/api/user_profile")]
    #[case::dotted_version("/pkg/1.2.3/x", "/pkg/{id}/x")]
    #[case::dotted_version_v("/pkg/v1.2/x", "/pkg/{id}/x")]
    #[case::favicon("/favicon.ico", "/favicon.ico")]
    #[case::index_html("/docs/index.html", "/docs/index.html")]
    #[case::extension_upper("/IMG/Photo.PNG", "/IMG/Photo.PNG")]
    #[case::minified("/js/jquery.min.js", "/js/{id}.js")]
    #[case::text_with_extension("/f/hello%20world.pdf", "/f/{id}.pdf")]
    #[case::unknown_extension("/f/report.final", "/f/{id}")]
    #[case::dot_only("/.", "/{id}")]
    #[case::dotfile("/.env", "/{id}")]
    #[case::trailing_dot("/a.", "/{id}")]
    fn templates(#[case] path: &str, #[case] expected: &str) {
        assert_eq!(template(path), expected);
    }

    #[rstest]
    #[case::ok(Some(200), true)]
    #[case::not_found(Some(404), false)]
    #[case::uri_too_long(Some(414), false)]
    #[case::method_not_allowed(Some(405), true)]
    #[case::unauthorized(Some(401), true)]
    #[case::bad_request(Some(400), true)]
    #[case::server_error(Some(500), true)]
    #[case::no_response(None, true)]
    fn route_only_when_one_matched(#[case] status: Option<u16>, #[case] has: bool) {
        assert_eq!(status_has_route(status), has);
    }
}
