//! Entry points for the fuzzing harness (`examples/fuzz_inputs.rs`): the request-body parsing every image
//! route uses (multipart or JSON with base64 images, with the server's field rules), without a server.
//! Not part of the service's interface.

use super::error::ApiError;
use super::input::{read_parts, JsonShape};
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;

/// Parse `body` as the image routes do (fields `image_a`, `image_b`, `image`, `images`, and text fields);
/// returns the number of files and text fields found.
pub async fn parse_image_body(content_type: &str, body: Vec<u8>, max_body: usize) -> Result<usize, ApiError> {
    let req = Request::builder()
        .header(CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let shape = JsonShape { single: &["image_a", "image_b"], list: Some(("images", "image")) };
    let parts = read_parts(req, max_body, &shape).await?;
    // What handlers do next with text fields: the shared parsers.
    let _ = super::common::parse_threshold(&parts);
    let _ = super::common::pipeline_options(&parts, true);
    let _ = super::common::parse_flag(&parts, "chips");
    Ok(parts.files.len() + parts.text.len())
}
