//! Trace/span id and tenant id text forms, as Tempo parses and prints them.

/// A 128-bit trace id.
pub type TraceId = [u8; 16];
/// A 64-bit span id.
pub type SpanId = [u8; 8];

/// Tempo's default tenant when multi-tenancy is off.
pub const SINGLE_TENANT: &str = "single-tenant";

/// Parse a trace id from 1..=32 hex digits (any case), left-padded with zeros, like Tempo.
/// Errors carry Tempo's message text.
pub fn parse_trace_id(s: &str) -> Result<TraceId, String> {
    if let Some((i, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "trace IDs can only contain hex characters: invalid character '{c}' at position {}",
            i + 1
        ));
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 32 {
        return Err("trace IDs can't be larger than 128 bits".to_string());
    }
    if s.is_empty() {
        return Err("trace IDs can't be empty".to_string());
    }
    let padded = format!("{digits:0>32}");
    let mut id = [0u8; 16];
    hex::decode_to_slice(padded, &mut id).map_err(|e| format!("invalid trace ID: {e}"))?;
    Ok(id)
}

/// Trace id as Tempo prints it in search results: lowercase hex, leading zeros trimmed.
pub fn trace_id_search_hex(id: &TraceId) -> String {
    let h = hex::encode(id);
    let t = h.trim_start_matches('0');
    if t.is_empty() {
        "0".to_string()
    } else {
        t.to_string()
    }
}

/// Span id as 16 lowercase hex chars.
pub fn span_id_hex(id: &SpanId) -> String {
    hex::encode(id)
}

/// Validate a tenant id the way Tempo does (≤150 bytes, `[A-Za-z0-9!-_.*'()]`, not `.`/`..`).
pub fn validate_tenant(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("no org id".to_string());
    }
    if t.len() > 150 {
        return Err(format!(
            "tenant ID is too long: max 150 characters, got {}",
            t.len()
        ));
    }
    if t == "." || t == ".." {
        return Err("tenant ID is '.' or '..'".to_string());
    }
    if let Some(c) = t.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')'))
    }) {
        return Err(format!(
            "tenant ID '{t}' contains unsupported character '{c}'"
        ));
    }
    Ok(())
}

/// Validate the name of a tenant about to be created: Tempo's rules, and in addition it starts
/// with a letter or digit and holds only letters, digits, `-`, `_` and `.` (no `-rf`, `*`,
/// `'`: the name becomes a directory). Tenants already on disk keep working under Tempo's rules.
pub fn validate_new_tenant(t: &str) -> Result<(), String> {
    validate_tenant(t)?;
    if !t.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("tenant ID '{t}' must start with a letter or digit"));
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "tenant ID '{t}' contains '{c}': new tenants may use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// Split a `X-Scope-OrgID` value (`a|b`) into sorted, de-duplicated, validated tenants.
pub fn parse_org_ids(header: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for t in header.split('|') {
        validate_tenant(t)?;
        out.push(t.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::full("0102030405060708090a0b0c0d0e0f10", "0102030405060708090a0b0c0d0e0f10")]
    #[case::short("2aa8a939ebadda", "0000000000000000002aa8a939ebadda")]
    #[case::upper("2AA8A939EBADDA", "0000000000000000002aa8a939ebadda")]
    #[case::leading_zeros(
        "0000000000000000000000000000000000ff",
        "000000000000000000000000000000ff"
    )]
    fn parses_ids(#[case] input: &str, #[case] want: &str) {
        assert_eq!(hex::encode(parse_trace_id(input).unwrap()), want);
    }

    #[rstest]
    #[case::bad_char(
        "xyz",
        "trace IDs can only contain hex characters: invalid character 'x' at position 1"
    )]
    #[case::bad_later(
        "abz",
        "trace IDs can only contain hex characters: invalid character 'z' at position 3"
    )]
    #[case::too_long(
        "1234567890123456789012345678901234",
        "trace IDs can't be larger than 128 bits"
    )]
    #[case::empty("", "trace IDs can't be empty")]
    fn rejects_ids(#[case] input: &str, #[case] want: &str) {
        assert_eq!(parse_trace_id(input).unwrap_err(), want);
    }

    #[rstest]
    #[case::trimmed([0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8], "102030405060708")]
    #[case::zero([0; 16], "0")]
    fn search_hex(#[case] id: TraceId, #[case] want: &str) {
        assert_eq!(trace_id_search_hex(&id), want);
    }

    #[rstest]
    #[case::plain("team-a", true)]
    #[case::punct("a.b_c!(x)*'", true)]
    #[case::slash("bad/tenant", false)]
    #[case::dot(".", false)]
    #[case::dotdot("..", false)]
    #[case::empty("", false)]
    #[case::space("a b", false)]
    fn tenants(#[case] t: &str, #[case] ok: bool) {
        assert_eq!(validate_tenant(t).is_ok(), ok);
    }

    #[rstest]
    #[case::plain("team-a", true)]
    #[case::dotted("prod.eu_1", true)]
    #[case::flag("-rf", false)]
    #[case::star("*", false)]
    #[case::quote("'", false)]
    #[case::parens("a(b)", false)]
    #[case::leading_dot(".hidden", false)]
    #[case::slash("bad/tenant", false)]
    fn new_tenants(#[case] t: &str, #[case] ok: bool) {
        assert_eq!(validate_new_tenant(t).is_ok(), ok, "{t}");
    }

    #[test]
    fn tenant_message_matches_tempo() {
        assert_eq!(
            validate_tenant("bad/tenant").unwrap_err(),
            "tenant ID 'bad/tenant' contains unsupported character '/'"
        );
    }

    #[test]
    fn org_ids_sorted_dedup() {
        assert_eq!(parse_org_ids("b|a|b").unwrap(), vec!["a", "b"]);
        assert!(parse_org_ids("a|").is_err());
    }
}
