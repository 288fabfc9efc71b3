//! The web console: `GET /` and its static files under `/ui/…`, embedded in the binary at compile time
//! (plain HTML, CSS and JavaScript modules; no build step). The page talks to the same `/v1` API as any
//! client, with the API key the person types in; it loads nothing from any other host, and its
//! Content-Security-Policy forbids it to.

use super::common::Path;
use super::error::ApiError;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Every file the console is made of: name under `/ui/`, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("ui/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("ui/app.js")),
    ("chart.js", "text/javascript; charset=utf-8", include_str!("ui/chart.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("ui/style.css")),
    ("favicon.svg", "image/svg+xml", include_str!("ui/favicon.svg")),
];

/// Only this origin: scripts, styles, API calls; pictures also from `blob:` and `data:` (thumbnails fetched
/// with the key, the encoder's chips).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                   connect-src 'self'; media-src 'self' blob:; form-action 'none'; frame-ancestors 'none'; \
                   base-uri 'none'";

fn file(name: &str) -> Result<Response, ApiError> {
    let (_, ct, body) =
        FILES.iter().find(|(n, _, _)| *n == name).ok_or_else(|| ApiError::NotFound(format!("/ui/{name}")))?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(ct)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (HeaderName::from_static("permissions-policy"), HeaderValue::from_static("camera=(self)")),
    ];
    Ok((headers, *body).into_response())
}

/// `GET /`: the console.
pub async fn index() -> Result<Response, ApiError> {
    file("index.html")
}

/// `GET /ui/{file}`: the console's scripts, style sheet and icon.
pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    file(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_served_and_nothing_comes_from_elsewhere() {
        let all: String = FILES.iter().map(|(_, _, b)| *b).collect();
        for (name, _, _) in FILES.iter().filter(|(n, _, _)| *n != "index.html") {
            assert!(all.contains(&format!("/ui/{name}")) || all.contains(&format!("./{name}")), "{name} unused");
        }
        for (name, _, body) in FILES {
            for needle in ["http://", "https://", "//cdn", "@import", "url(http"] {
                // The SVG namespace is an identifier, not a request.
                let body = body.replace("http://www.w3.org/2000/svg", "");
                assert!(!body.contains(needle), "{name} refers to another host ({needle})");
            }
        }
    }
}
