//! What a web page in the user's browser may do with the server (as Ollama does):
//!
//! - bound to loopback, the `Host` header must name a local host (`localhost`,
//!   `*.localhost`, a loopback address) or one of `allowed_hosts`: a page on a foreign
//!   name that DNS-rebinds to 127.0.0.1 cannot read the replies;
//! - a request with an `Origin` header must come from a local origin or one of
//!   `allowed_origins`: other pages cannot drive the models; the same list answers CORS
//!   preflights, so a browser UI on an allowed origin works;
//! - `POST` bodies must be declared JSON: a page cannot send a "simple" (non-preflighted)
//!   cross-origin request with a JSON content type.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::{AppState, dialect_of};

/// Rejects requests from foreign hosts and origins and POST bodies not declared JSON.
pub(crate) async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let config = &state.inner.config;
    let path = request.uri().path().to_string();
    let headers = request.headers();
    if config.bind.ip().is_loopback() {
        if let Some(host) = headers.get(header::HOST) {
            if !host_allowed(host, &config.allowed_hosts) {
                return forbidden(
                    &path,
                    format!(
                        "host {:?} is not allowed: this server answers local names only \
                         (add it with --allowed-hosts)",
                        String::from_utf8_lossy(host.as_bytes())
                    ),
                );
            }
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !origin_allowed(origin, &config.allowed_origins) {
            return forbidden(
                &path,
                format!(
                    "origin {:?} is not allowed (add it with --allowed-origins)",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            );
        }
    }
    if request.method() == Method::POST && !is_json(headers) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON: send `Content-Type: application/json` \
             (curl: -H 'content-type: application/json')",
        )
        .into_response_for(dialect_of(&path));
    }
    next.run(request).await
}

fn forbidden(path: &str, message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, message)
        .into_response_for(dialect_of(path))
        .into_response()
}

/// CORS answers for the allowed origins (preflights included).
pub(crate) fn cors(allowed: &[String]) -> CorsLayer {
    let allowed = allowed.to_vec();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin_allowed(origin, &allowed)
        }))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

/// `host[:port]` without the port, lower-cased; `[v6]` keeps its brackets off.
fn host_name(value: &str) -> String {
    let value = value.trim();
    let name = if let Some(rest) = value.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match value.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => value,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn is_local_name(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn host_allowed(host: &HeaderValue, extra: &[String]) -> bool {
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = host_name(host);
    is_local_name(&name) || extra.iter().any(|h| h == "*" || host_name(h) == name)
}

fn origin_allowed(origin: &HeaderValue, extra: &[String]) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if extra
        .iter()
        .any(|o| o == "*" || o.trim().trim_end_matches('/').eq_ignore_ascii_case(&origin))
    {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let name = host_name(rest);
    is_local_name(&name) || name == "0.0.0.0"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn local_hosts_only_unless_listed() {
        for ok in [
            "localhost",
            "localhost:8000",
            "LOCALHOST.:8000",
            "app.localhost",
            "127.0.0.1:8000",
            "127.1.2.3",
            "[::1]:8000",
        ] {
            assert!(host_allowed(&hv(ok), &[]), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "10.0.0.1:8000",
            "[::2]:80",
            "",
        ] {
            assert!(!host_allowed(&hv(bad), &[]), "{bad}");
        }
        assert!(host_allowed(&hv("box.lan:8000"), &["box.lan".into()]));
        assert!(host_allowed(&hv("anything"), &["*".into()]));
    }

    #[test]
    fn local_origins_only_unless_listed() {
        for ok in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "http://[::1]:5173",
            "http://0.0.0.0:8080",
        ] {
            assert!(origin_allowed(&hv(ok), &[]), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://localhost.evil.example",
            "null",
            "file://",
            "http://10.1.1.1",
        ] {
            assert!(!origin_allowed(&hv(bad), &[]), "{bad}");
        }
        let list = vec!["https://ui.example:8443".to_string()];
        assert!(origin_allowed(&hv("https://ui.example:8443"), &list));
        assert!(!origin_allowed(&hv("https://ui.example"), &list));
        assert!(origin_allowed(&hv("https://x.example"), &["*".into()]));
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (ct, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/vnd.api+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            h.insert(header::CONTENT_TYPE, hv(ct));
            assert_eq!(is_json(&h), ok, "{ct}");
        }
    }
}
