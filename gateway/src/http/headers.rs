//! Header rewriting between a public client and a replica: hop-by-hop headers removed (both
//! ways), `Host` set, `X-Forwarded-For` appended, `X-Forwarded-Proto` and `X-Forwarded-Host`
//! set, and the target made origin-form HTTP/1.1; with the small head helpers of the proxy
//! (idempotence, declared length, the HTTPS redirect, the head kept for a retry).

use std::net::IpAddr;

use hyper::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderName, HeaderValue, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE,
};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::{HeaderMap, Method, Request, Response, Uri, Version};

use crate::http::body::{RequestBody, ResponseBody};
use crate::pages::{Page, redirect};

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The host a request names: `:authority` (HTTP/2, absolute-form) or `Host`.
pub fn request_host(parts: &Parts) -> Option<HeaderValue> {
    if let Some(authority) = parts.uri.authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    parts.headers.get(HOST).cloned()
}

/// True for an HTTP/1.1 WebSocket (or other) upgrade request.
pub fn is_upgrade(parts: &Parts) -> bool {
    parts.version == Version::HTTP_11
        && parts.headers.contains_key(UPGRADE)
        && connection_has(&parts.headers, "upgrade")
}

/// The client's address as an `X-Forwarded-For` element (made once per connection).
pub fn client_value(client: IpAddr) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(client.to_string()))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Rewrites a client's request head for the replica; `client` is [`client_value`].
pub fn prepare_request(
    parts: &mut Parts,
    host: HeaderValue,
    client: &HeaderValue,
    tls: bool,
    upgrade: bool,
) {
    strip_hop_by_hop(&mut parts.headers, upgrade);
    if upgrade {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let forwarded_for = match parts.headers.get_all(&X_FORWARDED_FOR).iter().count() {
        0 => Some(client.clone()),
        _ => {
            let mut joined = String::new();
            for v in parts.headers.get_all(&X_FORWARDED_FOR) {
                if let Ok(s) = v.to_str() {
                    joined.push_str(s.trim());
                    joined.push_str(", ");
                }
            }
            joined.push_str(client.to_str().unwrap_or("unknown"));
            HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)).ok()
        }
    };
    if let Some(v) = forwarded_for {
        parts.headers.insert(X_FORWARDED_FOR, v);
    }
    let proto = if tls { "https" } else { "http" };
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    parts.headers.insert(X_FORWARDED_HOST, host.clone());
    parts.headers.insert(HOST, host);
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path);
    }
    parts.version = Version::HTTP_11;
}

/// Rewrites a replica's answer head for the client.
pub fn prepare_response(headers: &mut HeaderMap, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
}

/// Removes hop-by-hop headers: `Connection` and the headers it names, `Keep-Alive`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Upgrade` (kept with `Connection: upgrade` for an
/// upgrade) and every `Proxy-*`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !(upgrade && t.eq_ignore_ascii_case("upgrade")))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    for name in [KEEP_ALIVE, TE, TRAILER, TRANSFER_ENCODING] {
        headers.remove(name);
    }
    if !upgrade {
        headers.remove(UPGRADE);
    }
    if headers.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The request head kept to retry a bodiless request whose first try consumed it.
#[derive(Debug)]
pub(crate) struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Head {
    pub(crate) fn of(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        }
    }

    pub(crate) fn request(&self) -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::empty());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Safe to send twice (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// 308 to the same host (without its port) and path over HTTPS.
pub(crate) fn https_redirect(host: &HeaderValue, uri: &Uri) -> Response<ResponseBody> {
    let host = host.to_str().unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{name}{path}");
    match HeaderValue::from_str(&location) {
        Ok(location) => redirect(location),
        Err(_) => Page::BadRequest.response(),
    }
}

#[cfg(test)]
mod tests {
    use hyper::Request;

    use super::*;

    #[test]
    fn hop_by_hop_removed_and_forwarding_headers_set() {
        let req = Request::builder()
            .uri("/a?b=1")
            .header(HOST, "app.example.org")
            .header(CONNECTION, "keep-alive, x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic x")
            .header("x-forwarded-for", "10.0.0.1")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        let host = request_host(&parts).unwrap();
        let client = client_value([192, 0, 2, 7].into());
        prepare_request(&mut parts, host, &client, true, false);
        let h = &parts.headers;
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-authorization",
            "te",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example.org");
        assert_eq!(h["host"], "app.example.org");
        assert_eq!(parts.uri, "/a?b=1");
    }

    #[test]
    fn absolute_form_and_upgrade() {
        let req = Request::builder()
            .uri("http://app.example.org/ws")
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "websocket")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        assert!(is_upgrade(&parts));
        let host = request_host(&parts).unwrap();
        assert_eq!(host, "app.example.org");
        let client = client_value([127, 0, 0, 1].into());
        prepare_request(&mut parts, host, &client, false, true);
        assert_eq!(parts.uri, "/ws");
        assert_eq!(parts.headers["upgrade"], "websocket");
        assert_eq!(parts.headers["connection"], "upgrade");
        assert_eq!(parts.headers["x-forwarded-for"], "127.0.0.1");
    }
}
