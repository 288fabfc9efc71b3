//! Reading request bodies: multipart/form-data or JSON with base64 images, within the body limit.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use base64::Engine;
use std::collections::BTreeMap;

/// A request body as named parts: image fields keep their bytes, other fields their text.
#[derive(Debug, Default)]
pub struct Parts {
    /// Binary fields in arrival order (name, bytes).
    pub files: Vec<(String, Bytes)>,
    /// Text fields (the last value wins).
    pub text: BTreeMap<String, String>,
}

impl Parts {
    /// The single file field `name`.
    pub fn take_file(&mut self, name: &str) -> Result<Bytes, ApiError> {
        let pos = self.files.iter().position(|(n, _)| n == name).ok_or_else(|| ApiError::MissingField(name.into()))?;
        Ok(self.files.remove(pos).1)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.text.get(name).map(String::as_str).filter(|s| !s.is_empty())
    }
}

/// How JSON bodies name their images: field name → whether it holds a list.
pub struct JsonShape {
    pub single: &'static [&'static str],
    pub list: Option<(&'static str, &'static str)>,
}

/// Read `req` as multipart or JSON. JSON image fields (`shape`) are base64 strings (a `data:` URL prefix is
/// accepted); a JSON list field `(list, item)` becomes several files named `item`.
pub async fn read_parts(req: Request, max_body: usize, shape: &JsonShape) -> Result<Parts, ApiError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") {
        read_multipart(req, max_body).await
    } else if ct.starts_with("application/json") {
        let body =
            axum::body::to_bytes(req.into_body(), max_body).await.map_err(|_| ApiError::PayloadTooLarge(max_body))?;
        read_json(&body, shape)
    } else {
        Err(ApiError::UnsupportedMediaType(if ct.is_empty() { "(none)".into() } else { ct }))
    }
}

async fn read_multipart(req: Request, max_body: usize) -> Result<Parts, ApiError> {
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| ApiError::InvalidMultipart(e.body_text()))?;
    let mut parts = Parts::default();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_err(e, max_body)),
        };
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some() || field.content_type().is_some_and(|c| !c.starts_with("text/"));
        let data = field.bytes().await.map_err(|e| multipart_err(e, max_body))?;
        if is_file {
            parts.files.push((name, data));
        } else {
            let text = String::from_utf8(data.to_vec())
                .map_err(|_| ApiError::InvalidField { field: name.clone(), reason: "not UTF-8 text".into() })?;
            parts.text.insert(name, text);
        }
    }
    Ok(parts)
}

fn multipart_err(e: axum::extract::multipart::MultipartError, max_body: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(max_body)
    } else {
        ApiError::InvalidMultipart(e.body_text())
    }
}

fn decode_b64(field: &str, s: &str) -> Result<Bytes, ApiError> {
    let s = match s.find(";base64,") {
        Some(k) if s.starts_with("data:") => &s[k + 8..],
        _ => s,
    };
    let s: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map(Bytes::from)
        .map_err(|e| ApiError::InvalidField { field: field.into(), reason: format!("not base64: {e}") })
}

fn read_json(body: &[u8], shape: &JsonShape) -> Result<Parts, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| ApiError::InvalidJson("expected a JSON object".into()))?;
    let mut parts = Parts::default();
    for (k, val) in obj {
        if shape.single.contains(&k.as_str()) {
            let s = val.as_str().ok_or_else(|| ApiError::InvalidField {
                field: k.clone(),
                reason: "expected a base64 string".into(),
            })?;
            parts.files.push((k.clone(), decode_b64(k, s)?));
        } else if shape.list.is_some_and(|(l, _)| l == k) {
            let item = shape.list.map(|(_, i)| i).unwrap_or("image");
            let arr = val.as_array().ok_or_else(|| ApiError::InvalidField {
                field: k.clone(),
                reason: "expected a list of base64 strings".into(),
            })?;
            for (n, x) in arr.iter().enumerate() {
                let s = x.as_str().ok_or_else(|| ApiError::InvalidField {
                    field: format!("{k}[{n}]"),
                    reason: "expected a base64 string".into(),
                })?;
                parts.files.push((item.to_string(), decode_b64(&format!("{k}[{n}]"), s)?));
            }
        } else {
            let text = match val {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            parts.text.insert(k.clone(), text);
        }
    }
    Ok(parts)
}
