//! Grafana HTTP API client for the datasource calls the reconciler uses.
//!
//! Semantics relied on (Grafana's documented datasource API): `PUT /api/datasources/uid/:uid`
//! replaces the whole record and is guarded by `version` (409 "already been updated by someone
//! else" when stale); provisioned datasources answer 403 "Cannot update read-only data source";
//! `POST` answers 409 when the name or the UID exists. Credentials are only ever put in the
//! `Authorization` header and never logged.
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::secret::Secret;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    Token(Secret),
    Basic { user: String, password: Secret },
}

impl Auth {
    /// The credential bytes, used as the key of the secret-fingerprint HMAC.
    pub fn key(&self) -> &[u8] {
        match self {
            Auth::Token(t) => t.expose().as_bytes(),
            Auth::Basic { password, .. } => password.expose().as_bytes(),
        }
    }
}

/// Errors from the Grafana API, each naming the Grafana.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("grafana {grafana}: cannot reach {url}: {reason}")]
    Transport {
        grafana: String,
        url: String,
        reason: String,
    },
    #[error("grafana {grafana}: authentication failed ({status}); check the token or password")]
    Unauthorized { grafana: String, status: u16 },
    #[error("grafana {grafana}: {what}: version conflict (changed by someone else meanwhile)")]
    VersionConflict { grafana: String, what: String },
    #[error("grafana {grafana}: {what}: already exists: {message}")]
    Exists {
        grafana: String,
        what: String,
        message: String,
    },
    #[error("grafana {grafana}: {what}: provisioned datasource is read-only: {message}")]
    ReadOnly {
        grafana: String,
        what: String,
        message: String,
    },
    #[error("grafana {grafana}: {what}: HTTP {status}: {message}")]
    Http {
        grafana: String,
        what: String,
        status: u16,
        message: String,
    },
}

/// A client for one Grafana org.
#[derive(Debug, Clone)]
pub struct GrafanaClient {
    id: String,
    base: String,
    org_id: u64,
    auth: Auth,
    http: reqwest::Client,
}

impl GrafanaClient {
    /// Build a client; `ca_pem` adds a trusted CA.
    pub fn new(
        id: &str,
        base: &str,
        org_id: u64,
        auth: Auth,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ApiError> {
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("sonde-reconcile/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| ApiError::Transport {
                grafana: id.into(),
                url: base.into(),
                reason: format!("invalid CA file: {e}"),
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| ApiError::Transport {
            grafana: id.into(),
            url: base.into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            id: id.into(),
            base: base.trim_end_matches('/').into(),
            org_id,
            auth,
            http,
        })
    }

    /// The Grafana id from the config.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The credential used as HMAC key for secret fingerprints.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<(StatusCode, Value), ApiError> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .header("Accept", "application/json");
        req = match &self.auth {
            Auth::Token(t) => req.bearer_auth(t.expose()),
            Auth::Basic { user, password } => req
                .basic_auth(user, Some(password.expose()))
                .header("X-Grafana-Org-Id", self.org_id.to_string()),
        };
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ApiError::Transport {
            grafana: self.id.clone(),
            url: url.clone(),
            reason: transport_reason(&e),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok((status, json));
        }
        let mut message = json
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(200).collect());
        // Grafana puts the cause of a 500 in `error` (outside production builds).
        if let Some(cause) = json.get("error").and_then(Value::as_str) {
            message = format!("{message}: {cause}");
        }
        let (grafana, what) = (self.id.clone(), what.to_string());
        Err(match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized {
                grafana,
                status: 401,
            },
            StatusCode::FORBIDDEN if message.to_ascii_lowercase().contains("read-only") => {
                ApiError::ReadOnly {
                    grafana,
                    what,
                    message,
                }
            }
            StatusCode::CONFLICT if message.contains("already been updated") => {
                ApiError::VersionConflict { grafana, what }
            }
            StatusCode::CONFLICT => ApiError::Exists {
                grafana,
                what,
                message,
            },
            s => ApiError::Http {
                grafana,
                what,
                status: s.as_u16(),
                message,
            },
        })
    }

    /// `GET /api/org`: check that the credentials act in the configured org (a service-account
    /// token is bound to one org; basic auth selects it with `X-Grafana-Org-Id`).
    pub async fn check_org(&self) -> Result<(), ApiError> {
        let (status, v) = self
            .call(Method::GET, "/api/org", None, "current org")
            .await?;
        let id = v.get("id").and_then(Value::as_u64);
        match id {
            Some(id) if id == self.org_id => Ok(()),
            _ => Err(ApiError::Http {
                grafana: self.id.clone(),
                what: "current org".into(),
                status: status.as_u16(),
                message: format!(
                    "the credentials act in org {}, but the config says org_id {}; use a token \
                     of that org or fix org_id",
                    id.map_or_else(|| "?".to_string(), |i| i.to_string()),
                    self.org_id
                ),
            }),
        }
    }

    /// `GET /api/datasources`: every datasource in the org.
    pub async fn list(&self) -> Result<Vec<Value>, ApiError> {
        let (status, v) = self
            .call(Method::GET, "/api/datasources", None, "list")
            .await?;
        match v {
            Value::Array(items) if status.is_success() => Ok(items),
            _ => Err(ApiError::Http {
                grafana: self.id.clone(),
                what: "list datasources".into(),
                status: status.as_u16(),
                message: "expected a JSON array".into(),
            }),
        }
    }

    /// `GET /api/datasources/uid/:uid`; `None` on 404.
    pub async fn get_by_uid(&self, uid: &str) -> Result<Option<Value>, ApiError> {
        let what = format!("get uid {uid}");
        let (status, v) = self
            .call(
                Method::GET,
                &format!("/api/datasources/uid/{uid}"),
                None,
                &what,
            )
            .await?;
        Ok((status != StatusCode::NOT_FOUND).then_some(v))
    }

    /// `POST /api/datasources`.
    pub async fn create(&self, body: &Value) -> Result<Value, ApiError> {
        let what = format!(
            "create uid {}",
            body.get("uid").and_then(Value::as_str).unwrap_or("")
        );
        let (status, v) = self
            .call(Method::POST, "/api/datasources", Some(body), &what)
            .await?;
        self.expect_found(status, v, &what)
    }

    /// `PUT /api/datasources/uid/:uid` with the whole record, guarded by `version`.
    pub async fn update(&self, uid: &str, body: &Value) -> Result<Value, ApiError> {
        let what = format!("update uid {uid}");
        let path = format!("/api/datasources/uid/{uid}");
        let (status, v) = self.call(Method::PUT, &path, Some(body), &what).await?;
        self.expect_found(status, v, &what)
    }

    /// `DELETE /api/datasources/uid/:uid`; `false` when it was already gone (404).
    pub async fn delete(&self, uid: &str) -> Result<bool, ApiError> {
        let what = format!("delete uid {uid}");
        let path = format!("/api/datasources/uid/{uid}");
        let (status, _) = self.call(Method::DELETE, &path, None, &what).await?;
        Ok(status != StatusCode::NOT_FOUND)
    }

    /// `POST /api/admin/provisioning/datasources/reload` (needs a server admin, basic auth).
    pub async fn reload_provisioning(&self) -> Result<(), ApiError> {
        let path = "/api/admin/provisioning/datasources/reload";
        let (status, v) = self
            .call(Method::POST, path, None, "reload provisioning")
            .await?;
        self.expect_found(status, v, "reload provisioning")
            .map(|_| ())
    }

    fn expect_found(&self, status: StatusCode, v: Value, what: &str) -> Result<Value, ApiError> {
        if status == StatusCode::NOT_FOUND {
            return Err(ApiError::Http {
                grafana: self.id.clone(),
                what: what.into(),
                status: 404,
                message: "Data source not found".into(),
            });
        }
        Ok(v)
    }
}

/// Why a request got no answer, with the whole cause chain (connection refused, DNS, TLS,
/// timeout): reqwest's own message is only "error sending request".
fn transport_reason(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() {
        parts.push(format!("timed out after {}s", TIMEOUT.as_secs()));
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    let hint = if e.is_timeout() || e.is_connect() {
        "; check `url` and that Grafana is running and reachable from here"
    } else {
        ""
    };
    format!("{}{hint}", parts.join(": "))
}
