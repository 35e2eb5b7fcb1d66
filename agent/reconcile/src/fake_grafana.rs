//! Test-only fake Grafana: the datasource endpoints the reconciler uses, on 127.0.0.1:0.
//!
//! It follows Grafana's documented datasource HTTP API (docs `developers/http_api/
//! data_source.md` and the handler/store code it describes); a real Grafana could not be run
//! here, so this is the reference the tests are written against:
//! - UIDs: at most 40 characters of `[a-zA-Z0-9_-]` (else 400); generated when absent.
//! - `POST /api/datasources`: 409 when the name or the UID exists in the org.
//! - `PUT /api/datasources/uid/:uid`: replaces the whole record (a missing `jsonData` becomes
//!   `{}`); `version` is an optimistic lock: when non-zero and older than the stored version,
//!   409 "Datasource has already been updated by someone else"; the new version is sent + 1.
//!   Secure values not sent are kept. 400 when the body's uid differs from the URL's. 403
//!   "Cannot update read-only data source" for provisioned (`readOnly`) datasources.
//! - Reads never return `secureJsonData`, only `secureJsonFields: {key: true}`.
//! - Custom headers: the proxy sends `jsonData.httpHeaderName<N>` with
//!   `secureJsonData.httpHeaderValue<N>` for N = 1, 2, … and stops at the first N without a
//!   name ([`FakeState::headers_sent`]), so a header after a gap is never sent.
//! - Basic auth or a bearer token is required (401 otherwise).
//! - `POST /api/admin/provisioning/datasources/reload`: needs a server admin (basic auth; 403
//!   for a token); a file that cannot be applied (e.g. "data source with the same uid already
//!   exists") is HTTP 500 `{"message": "Internal Server Error", "error": cause}` (the handler's
//!   `response.Error(500, "", err)`; production builds leave `error` out).
//! - `POST …/reload` also applies the provisioning files in [`FakeState::provisioning_dirs`]
//!   as Grafana does (docs `administration/provisioning`): every file's `deleteDatasources`
//!   first, then each of `datasources` inserted or updated by (name, orgId) as a read-only
//!   datasource whose `secureJsonData` replaces the whole secure set; a uid held by another
//!   datasource fails the reload ("data source with the same uid already exists"); with
//!   `prune: true`, provisioned datasources no file lists any more are deleted. Values are
//!   expanded: `$$` is a literal `$`, `$__env{VAR}`, `${VAR}`, `$VAR` and `$__file{path}`
//!   (content trimmed) are replaced.
//! - `DELETE /api/datasources/uid/:uid`: 403 "Cannot delete read-only data source" for a
//!   provisioned one, 404 when missing.
//! - Orgs: a token acts in org 1; basic auth picks org 1 or 2 with `X-Grafana-Org-Id`. Names
//!   and UIDs are unique per org only.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Map, Value, json};

/// One stored datasource: the public record and its write-only secrets.
#[derive(Debug, Clone)]
struct Stored {
    record: Map<String, Value>,
    secure: BTreeMap<String, String>,
}

/// The fake's state, inspectable by tests.
#[derive(Debug, Default)]
pub struct FakeState {
    stored: Vec<Stored>,
    next_id: i64,
    /// Write requests received (POST/PUT/DELETE), successful or not.
    pub writes: usize,
    /// Before the next PUT, bump the target's version as if another client had written.
    pub interfere_next_put: bool,
    /// Provisioning reloads that succeeded.
    pub reloads: usize,
    /// Make the next provisioning reloads fail as Grafana does when a file cannot be applied:
    /// HTTP 500, `message` "Internal Server Error" and the cause in `error`.
    pub reload_error: Option<String>,
    /// Directories of provisioning YAML files that a reload applies (none: reload only counts).
    pub provisioning_dirs: Vec<std::path::PathBuf>,
    /// Accepted credentials: the bearer token and the basic-auth `user:password`.
    pub token: String,
    pub basic: String,
}

/// A running fake Grafana.
pub struct FakeGrafana {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGrafana {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<Mutex<FakeState>>;

fn lock(s: &Shared) -> MutexGuard<'_, FakeState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn err(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 40
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn org_of_record(s: &Stored) -> u64 {
    s.record.get("orgId").and_then(Value::as_u64).unwrap_or(1)
}

fn name_of(s: &Stored) -> Option<&str> {
    s.record.get("name").and_then(Value::as_str)
}

/// The caller's org: a token is bound to org 1; basic auth selects one with
/// `X-Grafana-Org-Id` (default 1).
fn caller_org(headers: &HeaderMap) -> u64 {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| h.starts_with("Bearer "));
    let wanted = headers
        .get("x-grafana-org-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if bearer { 1 } else { wanted.unwrap_or(1) }
}

impl FakeState {
    fn find(&self, uid: &str) -> Option<usize> {
        self.find_in(1, uid)
    }

    /// UIDs (and names) are unique per org only.
    fn find_in(&self, org: u64, uid: &str) -> Option<usize> {
        self.stored.iter().position(|s| {
            s.record.get("uid").and_then(Value::as_str) == Some(uid) && org_of_record(s) == org
        })
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(h) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if let Some(t) = h.strip_prefix("Bearer ") {
            return !self.token.is_empty() && t == self.token;
        }
        if let Some(b) = h.strip_prefix("Basic ") {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default();
            return !self.basic.is_empty() && decoded == self.basic.as_bytes();
        }
        false
    }

    /// The record as Grafana returns it: no secrets, `secureJsonFields` instead.
    fn view(s: &Stored) -> Value {
        let mut r = s.record.clone();
        r.remove("provisioned");
        let fields: Map<String, Value> =
            s.secure.keys().map(|k| (k.clone(), json!(true))).collect();
        r.insert("secureJsonFields".into(), Value::Object(fields));
        Value::Object(r)
    }

    /// Insert a datasource directly (test setup, e.g. a provisioned one), bypassing the API.
    pub fn seed(&mut self, record: Value, secure: &[(&str, &str)]) {
        self.seed_in(1, record, secure);
    }

    /// Insert a datasource directly into `org`.
    pub fn seed_in(&mut self, org: u64, mut record: Value, secure: &[(&str, &str)]) {
        self.next_id += 1;
        if let Some(o) = record.as_object_mut() {
            o.insert("id".into(), json!(self.next_id));
            o.insert("orgId".into(), json!(org));
            o.entry("version").or_insert(json!(1));
            o.entry("readOnly").or_insert(json!(false));
            o.entry("jsonData").or_insert(json!({}));
            o.entry("access").or_insert(json!("proxy"));
        }
        let record = record.as_object().cloned().unwrap_or_default();
        let secure = secure
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        self.stored.push(Stored { record, secure });
    }

    /// The record with its secrets, in org 1 (test assertions only).
    pub fn get(&self, uid: &str) -> Option<(Value, BTreeMap<String, String>)> {
        self.get_in(1, uid)
    }

    /// The record with its secrets, in `org`.
    pub fn get_in(&self, org: u64, uid: &str) -> Option<(Value, BTreeMap<String, String>)> {
        let s = &self.stored[self.find_in(org, uid)?];
        Some((Self::view(s), s.secure.clone()))
    }

    /// Change a record as a user would in the UI (bumps the version).
    pub fn edit(&mut self, uid: &str, f: impl FnOnce(&mut Map<String, Value>)) {
        if let Some(i) = self.find(uid) {
            let r = &mut self.stored[i].record;
            f(r);
            let v = r.get("version").and_then(Value::as_i64).unwrap_or(0);
            r.insert("version".into(), json!(v + 1));
        }
    }

    /// Set a write-only value as a user would in the UI (bumps the version).
    pub fn set_secure(&mut self, uid: &str, key: &str, value: &str) {
        if let Some(i) = self.find(uid) {
            self.stored[i].secure.insert(key.into(), value.into());
            self.edit(uid, |_| {});
        }
    }

    /// The custom headers Grafana's proxy sends to the datasource's backend, in org 1: it
    /// reads `httpHeaderName1`, `httpHeaderName2`, … and stops at the first missing index.
    pub fn headers_sent(&self, uid: &str) -> Vec<(String, String)> {
        let Some(i) = self.find(uid) else {
            return Vec::new();
        };
        let s = &self.stored[i];
        let mut out = Vec::new();
        for n in 1.. {
            let name = s
                .record
                .get("jsonData")
                .and_then(|j| j.get(format!("httpHeaderName{n}")))
                .and_then(Value::as_str);
            let Some(name) = name else { break };
            let value = s
                .secure
                .get(&format!("httpHeaderValue{n}"))
                .cloned()
                .unwrap_or_default();
            out.push((name.to_string(), value));
        }
        out
    }

    /// Delete a record directly.
    pub fn remove(&mut self, uid: &str) {
        if let Some(i) = self.find(uid) {
            self.stored.remove(i);
        }
    }
}

async fn list(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let st = lock(&s);
    if !st.authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let keys = [
        "id",
        "uid",
        "orgId",
        "name",
        "type",
        "access",
        "url",
        "user",
        "database",
        "basicAuth",
        "isDefault",
        "jsonData",
        "readOnly",
    ];
    let org = caller_org(&headers);
    let items: Vec<Value> = st
        .stored
        .iter()
        .filter(|d| org_of_record(d) == org)
        .map(|d| {
            Value::Object(
                keys.iter()
                    .filter_map(|k| Some(((*k).to_string(), d.record.get(*k)?.clone())))
                    .collect(),
            )
        })
        .collect();
    Json(Value::Array(items)).into_response()
}

async fn get_uid(State(s): State<Shared>, headers: HeaderMap, Path(uid): Path<String>) -> Response {
    let st = lock(&s);
    if !st.authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    match st.find_in(caller_org(&headers), &uid) {
        Some(i) => Json(FakeState::view(&st.stored[i])).into_response(),
        None => err(StatusCode::NOT_FOUND, "Data source not found"),
    }
}

fn secure_of(body: &Value) -> BTreeMap<String, String> {
    body.get("secureJsonData")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The record fields a write sets (whole-record semantics).
fn record_from(body: &Value, uid: &str, org: u64, id: i64, version: i64) -> Map<String, Value> {
    let s = |k: &str| body.get(k).cloned().unwrap_or(json!(""));
    let b = |k: &str| body.get(k).cloned().unwrap_or(json!(false));
    let mut r = Map::new();
    r.insert("id".into(), json!(id));
    r.insert("uid".into(), json!(uid));
    r.insert("orgId".into(), json!(org));
    for k in [
        "name",
        "type",
        "access",
        "url",
        "user",
        "database",
        "basicAuthUser",
    ] {
        r.insert(k.into(), s(k));
    }
    for k in ["basicAuth", "withCredentials", "isDefault"] {
        r.insert(k.into(), b(k));
    }
    let jd = body
        .get("jsonData")
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or(json!({}));
    r.insert("jsonData".into(), jd);
    r.insert("version".into(), json!(version));
    r.insert("readOnly".into(), json!(false));
    r
}

async fn create(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut st = lock(&s);
    st.writes += 1;
    if !st.authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty()
        || body
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
    {
        return err(
            StatusCode::BAD_REQUEST,
            "Validation error: name and type are required",
        );
    }
    st.next_id += 1;
    let id = st.next_id;
    let uid = match body.get("uid").and_then(Value::as_str) {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => format!("gen{id:05}"),
    };
    if !valid_uid(&uid) {
        return err(
            StatusCode::BAD_REQUEST,
            "Failed to add datasource: invalid UID",
        );
    }
    let org = caller_org(&headers);
    if st
        .stored
        .iter()
        .any(|d| name_of(d) == Some(&name) && org_of_record(d) == org)
    {
        return err(
            StatusCode::CONFLICT,
            "data source with the same name already exists",
        );
    }
    if st.find_in(org, &uid).is_some() {
        return err(
            StatusCode::CONFLICT,
            "data source with the same uid already exists",
        );
    }
    let record = record_from(&body, &uid, org, id, 1);
    let stored = Stored {
        record,
        secure: secure_of(&body),
    };
    let view = FakeState::view(&stored);
    st.stored.push(stored);
    Json(json!({"datasource": view, "id": id, "message": "Datasource added", "name": name}))
        .into_response()
}

async fn update(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = lock(&s);
    st.writes += 1;
    if !st.authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let org = caller_org(&headers);
    let Some(i) = st.find_in(org, &uid) else {
        return err(StatusCode::NOT_FOUND, "Data source not found");
    };
    if body
        .get("uid")
        .and_then(Value::as_str)
        .is_some_and(|u| u != uid)
    {
        return err(StatusCode::BAD_REQUEST, "UID mismatch");
    }
    if st.interfere_next_put {
        st.interfere_next_put = false;
        let r = &mut st.stored[i].record;
        let v = r.get("version").and_then(Value::as_i64).unwrap_or(0);
        r.insert("version".into(), json!(v + 1));
    }
    let current = st.stored[i].record.clone();
    if current.get("readOnly").and_then(Value::as_bool) == Some(true) {
        return err(StatusCode::FORBIDDEN, "Cannot update read-only data source");
    }
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let clash = st.stored.iter().any(|d| {
        name_of(d) == Some(&name)
            && org_of_record(d) == org
            && d.record.get("uid").and_then(Value::as_str) != Some(&uid)
    });
    if clash {
        return err(
            StatusCode::CONFLICT,
            "data source with the same name already exists",
        );
    }
    let sent = body.get("version").and_then(Value::as_i64).unwrap_or(0);
    let stored_v = current.get("version").and_then(Value::as_i64).unwrap_or(0);
    if sent != 0 && stored_v > sent {
        return err(
            StatusCode::CONFLICT,
            "Datasource has already been updated by someone else",
        );
    }
    let id = current.get("id").and_then(Value::as_i64).unwrap_or(0);
    let record = record_from(&body, &uid, org, id, sent + 1);
    let mut secure = st.stored[i].secure.clone();
    secure.extend(secure_of(&body));
    st.stored[i] = Stored { record, secure };
    let view = FakeState::view(&st.stored[i]);
    Json(json!({"datasource": view, "id": id, "message": "Datasource updated", "name": name}))
        .into_response()
}

async fn delete(State(s): State<Shared>, headers: HeaderMap, Path(uid): Path<String>) -> Response {
    let mut st = lock(&s);
    st.writes += 1;
    if !st.authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let Some(i) = st.find_in(caller_org(&headers), &uid) else {
        return err(StatusCode::NOT_FOUND, "Data source not found");
    };
    let record = &st.stored[i].record;
    if record.get("readOnly").and_then(Value::as_bool) == Some(true) {
        return err(StatusCode::FORBIDDEN, "Cannot delete read-only data source");
    }
    let id = record.get("id").cloned().unwrap_or(json!(0));
    st.stored.remove(i);
    Json(json!({"message": "Data source deleted", "id": id})).into_response()
}

/// `GET /api/org`: the caller's org. Tokens are bound to org 1; basic auth follows
/// `X-Grafana-Org-Id` (the fake admin is a member of orgs 1 and 2).
async fn org(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let st = lock(&s);
    if !st.authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let id = caller_org(&headers);
    if !(1..=2).contains(&id) {
        return err(
            StatusCode::UNAUTHORIZED,
            "User does not belong to the organization",
        );
    }
    Json(json!({"id": id, "name": format!("Org {id}")})).into_response()
}

/// Reload needs a server admin: basic auth only (a service-account token gets 403).
async fn reload(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let mut st = lock(&s);
    if !st.authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| h.starts_with("Basic "));
    if !basic {
        return err(
            StatusCode::FORBIDDEN,
            "You'll need additional permissions to perform this action",
        );
    }
    let applied = match &st.reload_error {
        Some(cause) => Err(cause.clone()),
        None => {
            let dirs = st.provisioning_dirs.clone();
            provisioning::apply(&mut st, &dirs)
        }
    };
    if let Err(cause) = applied {
        let body = json!({"message": "Internal Server Error", "error": cause});
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    }
    st.reloads += 1;
    Json(json!({"message": "Datasources config reloaded"})).into_response()
}

mod provisioning;

impl FakeGrafana {
    /// Start on 127.0.0.1 with a port chosen by the kernel; accepts `token` as bearer token and
    /// `basic` (`user:password`) for basic auth.
    pub async fn start(token: &str, basic: &str) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            token: token.into(),
            basic: basic.into(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/api/datasources", get(list).post(create))
            .route(
                "/api/datasources/uid/{uid}",
                get(get_uid).put(update).delete(delete),
            )
            .route("/api/org", get(org))
            .route(
                "/api/admin/provisioning/datasources/reload",
                axum::routing::post(reload),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lock the state for setup or assertions.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.state)
    }
}
