//! `Client`, the CLI's one HTTP client of the master: where the master is and the admin token
//! (flags, environment or the master's data dir), requests with typed bodies, error answers read
//! as the `hearth_api::ApiError` they name, and the compare-and-set read-modify-write of a
//! deployment.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use hearth_api::{ApiError, DeploymentSpec, DeploymentView, ErrorBody};
use serde_json::Value;

use crate::Cli;
use crate::master_dir::MasterDir;

pub(crate) struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    pub(crate) fn new(cli: &Cli) -> anyhow::Result<Self> {
        let dir = cli.data_dir.as_ref().map(MasterDir::new);
        let saved = crate::users::saved_login()?;
        let url = match (&cli.url, &dir, &saved) {
            (Some(u), _, _) => u.trim_end_matches('/').to_owned(),
            (None, Some(d), _) => d.url()?,
            (None, None, Some(l)) => l.url.clone(),
            (None, None, None) => {
                bail!(
                    "say where the master is: --url URL, HEARTH_URL, --data-dir D, or `hearth --url URL login`"
                )
            }
        };
        let token = match (
            std::env::var("HEARTH_TOKEN").ok(),
            &cli.token_file,
            &dir,
            saved,
        ) {
            (Some(t), _, _, _) => t,
            (None, Some(f), _, _) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read token file {}", f.display()))?,
            (None, None, Some(d), _) => d.admin_token()?,
            (None, None, None, Some(l)) => l.credential,
            (None, None, None, None) => {
                bail!("no credential: `hearth login`, HEARTH_TOKEN, --token-file or --data-dir")
            }
        };
        Self::with(&url, &token)
    }

    /// A client of the master at `url` with this credential.
    pub(crate) fn with(url: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        })
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `PUT path` with raw bytes.
    pub(crate) async fn put_bytes(&self, path: &str, bytes: Vec<u8>) -> anyhow::Result<Value> {
        let resp = self
            .http
            .put(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .body(bytes)
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the master at {}: {e}", self.url))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return match serde_json::from_value::<ErrorBody>(v) {
                Ok(body) => Err(ApiError::from_answer(status.as_u16(), body).into()),
                Err(_) => bail!("upload refused"),
            };
        }
        Ok(v)
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        Ok(self.send(method, path, body.as_ref(), None).await?.0)
    }

    /// `method path` with an optional JSON body and `If-Match`; the answer and its `ETag`. An
    /// error answer is the [`ApiError`] it names (its message is what the CLI prints).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl serde::Serialize + ?Sized)>,
        if_match: Option<&str>,
    ) -> anyhow::Result<(Value, Option<String>)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(v) = if_match {
            req = req.header(reqwest::header::IF_MATCH, format!("\"{v}\""));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the master at {}: {e}", self.url))?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned());
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok((value, etag));
        }
        match serde_json::from_value::<ErrorBody>(value) {
            Ok(body) => Err(ApiError::from_answer(status.as_u16(), body).into()),
            Err(_) => bail!("the master answered {status}"),
        }
    }

    /// A typed answer of `GET path`, with its `ETag`.
    pub(crate) async fn read<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<(T, Option<String>)> {
        let (v, etag) = self
            .send(reqwest::Method::GET, path, None::<&Value>, None)
            .await?;
        let typed = serde_json::from_value(v).with_context(|| {
            format!("the master's answer to GET {path} is not what hearth-api says")
        })?;
        Ok((typed, etag))
    }

    /// Read-modify-write of a deployment's spec with compare-and-set: reads it with its version,
    /// applies `change`, writes it back with `If-Match`; when another change came in between
    /// (412 `version_mismatch`), reads it again and re-applies, at most [`CAS_ATTEMPTS`] times.
    pub(crate) async fn change_deployment(
        &self,
        name: &str,
        change: impl Fn(&mut DeploymentSpec) -> anyhow::Result<()>,
    ) -> anyhow::Result<Value> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (view, etag) = self
                .read::<DeploymentView>(&format!("/v1/deployments/{name}"))
                .await?;
            let version = etag.unwrap_or(view.version);
            let mut spec = view.spec;
            change(&mut spec)?;
            match self
                .send(
                    reqwest::Method::POST,
                    "/v1/deployments",
                    Some(&spec),
                    Some(&version),
                )
                .await
            {
                Err(e)
                    if attempt < CAS_ATTEMPTS
                        && matches!(e.downcast_ref(), Some(ApiError::VersionMismatch(_))) =>
                {
                    continue;
                }
                other => return Ok(other?.0),
            }
        }
    }
}

/// Read-modify-write attempts before a deployment that keeps changing is reported.
pub(crate) const CAS_ATTEMPTS: u32 = 8;
