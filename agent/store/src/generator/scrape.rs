//! The scrape route `/metrics/generator` (generated series as Prometheus text, for a Prometheus
//! that scrapes instead of receiving remote write) and the generator's own counters on
//! `/metrics`.
use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::Generator;
use crate::api::{ApiState, tenants, text};

/// Generated series: every tenant's, or with multitenancy and `X-Scope-OrgID`, those tenants'.
pub async fn generated(State(s): State<ApiState>, h: HeaderMap) -> Response {
    let Some(g) = s.store.generator().cloned() else {
        return text(
            StatusCode::NOT_FOUND,
            "the metrics generator is off (store.generator.enabled: false)",
        );
    };
    let only = if s.store.config().multitenancy_enabled && h.contains_key("x-scope-orgid") {
        match tenants(&s.store, &h) {
            Ok(t) => Some(t),
            Err(r) => return r,
        }
    } else {
        None
    };
    let body = tokio::task::spawn_blocking(move || g.render(only.as_deref()))
        .await
        .unwrap_or_default();
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Put the generator's own counters before the exposition's closing `# EOF`.
pub fn append_self(g: &Generator, body: &mut String) {
    let had_eof = body.trim_end().ends_with("# EOF");
    if had_eof {
        let keep = body.trim_end().trim_end_matches("# EOF").len();
        body.truncate(keep);
    }
    body.push_str(&g.render_self());
    if !body.ends_with('\n') {
        body.push('\n');
    }
    if had_eof {
        body.push_str("# EOF\n");
    }
}
