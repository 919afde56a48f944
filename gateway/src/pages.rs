//! The gateway's own answers: small fixed HTML pages for the statuses it produces itself
//! (404 unknown host, 308 to HTTPS, 413, 429, 502, 503 with `Retry-After`, 400). Each page is
//! a static string, so producing one allocates only the response.

use hyper::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER,
};
use hyper::{Response, StatusCode};

use crate::http::body::ResponseBody;

/// A fixed page: a title and one sentence.
macro_rules! page {
    ($title:literal, $text:literal) => {
        concat!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>",
            $title,
            "</title></head>\n<body><h1>",
            $title,
            "</h1>\n<p>",
            $text,
            "</p>\n<hr><p>hearth gateway</p></body></html>\n"
        )
    };
}

/// A page the gateway answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// 400: the request names no host.
    BadRequest,
    /// 404: no route for the host.
    UnknownHost,
    /// 413: the request body is larger than the gateway accepts.
    TooLarge,
    /// 429: the client's request rate is over its limit.
    TooManyRequests,
    /// 502: every try to reach a replica failed.
    BadGateway,
    /// 503: the route has no available replica.
    Unavailable,
    /// 504: the replica did not begin its answer within the response timeout.
    GatewayTimeout,
}

/// Seconds a client is asked to wait after a 503 or a 429.
pub const RETRY_AFTER_S: &str = "5";

impl Page {
    /// The page's status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::UnknownHost => StatusCode::NOT_FOUND,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The page's HTML.
    pub fn html(self) -> &'static str {
        match self {
            Self::BadRequest => page!("400 Bad Request", "The request does not name a host."),
            Self::UnknownHost => page!(
                "404 Not Found",
                "No service is published under this name on this gateway."
            ),
            Self::TooLarge => page!("413 Content Too Large", "The request body is too large."),
            Self::TooManyRequests => page!(
                "429 Too Many Requests",
                "Too many requests from your address; please slow down."
            ),
            Self::BadGateway => page!(
                "502 Bad Gateway",
                "The service could not be reached. Please try again."
            ),
            Self::Unavailable => page!(
                "503 Service Unavailable",
                "The service has no running replica at the moment. Please try again shortly."
            ),
            Self::GatewayTimeout => page!(
                "504 Gateway Timeout",
                "The service did not answer in time. Please try again."
            ),
        }
    }

    /// The response.
    pub fn response(self) -> Response<ResponseBody> {
        let html = self.html();
        let mut resp = Response::new(ResponseBody::page(html));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(CONTENT_LENGTH, HeaderValue::from(html.len()));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Self::Unavailable | Self::TooManyRequests) {
            h.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
        }
        resp
    }
}

/// 308 Permanent Redirect to `location` (the same host and path over HTTPS).
pub fn redirect(location: HeaderValue) -> Response<ResponseBody> {
    let html = page!(
        "308 Permanent Redirect",
        "This service is served over HTTPS."
    );
    let mut resp = Response::new(ResponseBody::page(html));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let h = resp.headers_mut();
    h.insert(LOCATION, location);
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(html.len()));
    resp
}
