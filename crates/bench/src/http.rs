//! The load generator's HTTP client: hyper's own connection pool, with no redirect, cookie or
//! retry layers and no URL parsing per call. The load generator shares the machine with the
//! server it measures, so what it spends per call is taken from the server; the lighter it
//! is, the more of the machine the measurement is about the server. Both sides of every
//! comparison are driven through it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::FutureExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::load::Call;

/// How long one call may take, answer included, before it counts as a transport error: a
/// server that stops answering fails the run instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A pool of HTTP/1.1 connections, kept alive between calls.
pub type Http = Client<HttpConnector, Full<Bytes>>;

/// A new pool.
pub fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A request built once (URL parsed, headers and body encoded) and sent as many times as
/// wanted.
#[derive(Debug, Clone)]
pub struct Prototype {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Prototype {
    /// `method` on `url`, without headers or body.
    pub fn new(method: Method, url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            method,
            uri: url.parse().with_context(|| format!("the URL {url}"))?,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        })
    }

    /// With the header `name: value`.
    pub fn header(mut self, name: HeaderName, value: &str) -> anyhow::Result<Self> {
        let mut value = HeaderValue::try_from(value).with_context(|| format!("header {name}"))?;
        value.set_sensitive(name == AUTHORIZATION);
        self.headers.insert(name, value);
        Ok(self)
    }

    /// With `token` as its bearer.
    pub fn bearer(self, token: &str) -> anyhow::Result<Self> {
        self.header(AUTHORIZATION, &format!("Bearer {token}"))
    }

    /// With `body` as its JSON body.
    pub fn json(self, body: &impl Serialize) -> anyhow::Result<Self> {
        self.body("application/json", serde_json::to_vec(body)?)
    }

    /// With `body`, of type `content_type`.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> anyhow::Result<Self> {
        self.body = body.into();
        self.header(CONTENT_TYPE, content_type)
    }

    /// A copy to send.
    fn request(&self) -> hyper::Request<Full<Bytes>> {
        let mut r = hyper::Request::new(Full::new(self.body.clone()));
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }

    /// Sends a copy: the status and the whole body (status 0 for a transport error or a
    /// call past [`CALL_TIMEOUT`]).
    pub async fn send(&self, http: &Http) -> (u16, Bytes) {
        let call = async {
            let answer = http.request(self.request()).await.ok()?;
            let status = answer.status().as_u16();
            let body = answer.into_body().collect().await.ok()?;
            Some((status, body.to_bytes()))
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Some(answer)) => answer,
            _ => (0, Bytes::new()),
        }
    }

    /// Sends a copy and reads a successful answer as `T`; any other answer is an error that
    /// says what the server sent.
    pub async fn send_as<T: DeserializeOwned>(&self, http: &Http) -> (u16, anyhow::Result<T>) {
        let (status, body) = self.send(http).await;
        let answer = if (200..300).contains(&status) {
            serde_json::from_slice(&body).with_context(|| {
                format!("an answer of {status}: {}", String::from_utf8_lossy(&body))
            })
        } else {
            Err(anyhow::anyhow!(
                "answered {status}: {}",
                String::from_utf8_lossy(&body)
            ))
        };
        (status, answer)
    }
}

/// One fixed call, repeated: a copy of `prototype` each time. The answer's body is read and
/// dropped, not parsed.
pub fn fixed_call(http: &Http, prototype: Prototype) -> Call {
    let (http, prototype) = (http.clone(), Arc::new(prototype));
    Arc::new(move |_| {
        let (http, prototype) = (http.clone(), prototype.clone());
        async move { prototype.send(&http).await.0 }.boxed()
    })
}
