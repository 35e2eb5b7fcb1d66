//! Apply modes: the Grafana HTTP API, provisioning YAML files, grafana-operator manifests.
use crate::config::GrafanaConfig;

use super::{
    Error,
    observed::grafana::{Auth, GrafanaClient},
    secret,
};

pub mod api;
pub mod files;
pub mod render_files;
pub mod textdiff;
pub(crate) mod user_files;

/// Build the API client for a Grafana that has a `url`; `None` without one.
pub fn client_for(g: &GrafanaConfig) -> Result<Option<GrafanaClient>, Error> {
    let Some(url) = &g.url else { return Ok(None) };
    let auth = match (&g.token, &g.basic_auth) {
        (Some(t), _) => Auth::Token(secret::load(t, &format!("grafanas[{}].token", g.id))?),
        (None, Some(b)) => Auth::Basic {
            user: b.user.clone(),
            password: secret::load(&b.password, &format!("grafanas[{}].basic_auth", g.id))?,
        },
        (None, None) => return Ok(None),
    };
    let ca = match &g.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|source| Error::CaFile {
            path: p.display().to_string(),
            source,
        })?),
        None => None,
    };
    Ok(Some(GrafanaClient::new(
        &g.id,
        url,
        g.org_id,
        auth,
        ca.as_deref(),
    )?))
}
