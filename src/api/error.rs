//! The one place where errors become HTTP: every error is `application/problem+json` (RFC 9457) with a
//! stable `code`. 5xx bodies stay opaque; their cause is logged.

use crate::auth::AuthError;
use crate::gallery::GalleryError;
use crate::pipeline::PipelineError;
use crate::preprocess::ImageError;
use crate::runtime::RuntimeError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {source}")]
    Image { field: String, source: ImageError },
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("content type '{0}' is not supported; send multipart/form-data or application/json")]
    UnsupportedMediaType(String),
    #[error("the field '{0}' is required")]
    MissingField(String),
    #[error("{0}")]
    InvalidMetric(String),
    #[error("the field '{field}' is not valid: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("the JSON body is not valid: {0}")]
    InvalidJson(String),
    #[error("the multipart body is not valid: {0}")]
    InvalidMultipart(String),
    #[error("the query string is not valid: {0}")]
    InvalidQuery(String),
    #[error("the path is not valid: {0}")]
    InvalidPath(String),
    #[error("at most {0} images per request")]
    TooManyImages(usize),
    #[error("no model '{0}' is loaded (GET /v1/models lists them)")]
    UnknownModel(String),
    #[error("the service is at capacity; retry shortly")]
    Overloaded,
    #[error("the service is starting: models are not loaded yet")]
    NotReady,
    #[error("not ready: {0}")]
    ModelsFailing(String),
    #[error("{0}")]
    ImagesTooLarge(String),
    #[error("too many failed API keys from this client; retry in {0} s")]
    TooManyFailedKeys(u64),
    #[error("the request took longer than {} s (body upload included)", .0.as_secs_f64())]
    Timeout(std::time::Duration),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}: no face was found in the image")]
    NoFace(String),
    #[error("no collection '{0}'")]
    UnknownCollection(String),
    #[error("no subject '{0}' in this collection")]
    UnknownSubject(String),
    #[error("no sample '{0}' of this subject")]
    UnknownSample(String),
    #[error("no API key '{0}'")]
    UnknownKey(String),
    #[error("a collection named '{0}' already exists")]
    CollectionExists(String),
    #[error("a subject named '{0}' already exists in this collection")]
    SubjectExists(String),
    #[error("subject '{0}' has no samples to compare with")]
    EmptySubject(String),
    #[error("the collection has {0} samples; anomaly scores need at least 2")]
    TooFewSamples(usize),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidJob(String),
    #[error("{0}")]
    PathOutsideDataRoot(String),
    #[error("no job '{0}'")]
    UnknownJob(String),
    #[error("{0}")]
    JobState(String),
    #[error("{0}")]
    UnknownVersion(String),
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`/problems/<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable machine-readable code, e.g. `image_decode_failed`.
    pub code: String,
    pub detail: String,
    /// The request field the problem is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// Status and stable code; exhaustive on purpose, so a new variant must be given both.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            Image { source, .. } => match source {
                ImageError::TooLarge { .. } | ImageError::TooMuchMemory(_) => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large")
                }
                ImageError::UnknownFormat | ImageError::Decode(_) | ImageError::Empty => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "image_decode_failed")
                }
            },
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            MissingField(_) => (StatusCode::BAD_REQUEST, "missing_field"),
            InvalidMetric(_) => (StatusCode::BAD_REQUEST, "invalid_metric"),
            InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            InvalidMultipart(_) => (StatusCode::BAD_REQUEST, "invalid_multipart"),
            InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            TooManyImages(_) => (StatusCode::BAD_REQUEST, "too_many_images"),
            UnknownModel(_) => (StatusCode::NOT_FOUND, "unknown_model"),
            Overloaded => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ModelsFailing(_) => (StatusCode::SERVICE_UNAVAILABLE, "models_failing"),
            ImagesTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "images_too_large"),
            TooManyFailedKeys(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_failed_keys"),
            Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            NoFace(_) => (StatusCode::UNPROCESSABLE_ENTITY, "no_face"),
            UnknownCollection(_) => (StatusCode::NOT_FOUND, "collection_not_found"),
            UnknownSubject(_) => (StatusCode::NOT_FOUND, "subject_not_found"),
            UnknownSample(_) => (StatusCode::NOT_FOUND, "sample_not_found"),
            UnknownKey(_) => (StatusCode::NOT_FOUND, "api_key_not_found"),
            CollectionExists(_) => (StatusCode::CONFLICT, "collection_exists"),
            SubjectExists(_) => (StatusCode::CONFLICT, "subject_exists"),
            EmptySubject(_) => (StatusCode::UNPROCESSABLE_ENTITY, "subject_has_no_samples"),
            TooFewSamples(_) => (StatusCode::UNPROCESSABLE_ENTITY, "too_few_samples"),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            InvalidJob(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_job"),
            PathOutsideDataRoot(_) => (StatusCode::BAD_REQUEST, "path_outside_data_root"),
            UnknownJob(_) => (StatusCode::NOT_FOUND, "job_not_found"),
            JobState(_) => (StatusCode::CONFLICT, "job_state"),
            UnknownVersion(_) => (StatusCode::NOT_FOUND, "version_not_found"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            ApiError::Image { field, .. } | ApiError::InvalidField { field, .. } => Some(field.clone()),
            ApiError::NoFace(f) => Some(f.clone()),
            ApiError::MissingField(f) => Some(f.clone()),
            _ => None,
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Overloaded => ApiError::Overloaded,
            RuntimeError::UnknownModel(m) => ApiError::UnknownModel(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// The problem with one file of a request (`field` names it) that the pipeline could not prepare.
    pub fn from_pipeline(field: &str, e: PipelineError) -> Self {
        match e {
            PipelineError::Image(source) => ApiError::Image { field: field.to_string(), source },
            PipelineError::NoFace => ApiError::NoFace(field.to_string()),
            other => other.into(),
        }
    }
}

impl From<PipelineError> for ApiError {
    /// The pipeline's own failures (not a file's): an overloaded detector is the service's capacity.
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Detector(r) => r.into(),
            PipelineError::DecodeBusy => ApiError::Overloaded,
            e @ PipelineError::RequestTooLarge { .. } => ApiError::ImagesTooLarge(e.to_string()),
            e @ (PipelineError::Image(_)
            | PipelineError::NoFace
            | PipelineError::NoDetector
            | PipelineError::Read(..)
            | PipelineError::LoadDetector(..)
            | PipelineError::Model(_)
            | PipelineError::Task(_)) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, name } => match kind {
                "collection" => ApiError::UnknownCollection(name),
                "subject" => ApiError::UnknownSubject(name),
                "sample" | "sample image" => ApiError::UnknownSample(name),
                "api key" => ApiError::UnknownKey(name),
                other => ApiError::Internal(format!("{other} '{name}' not found")),
            },
            StoreError::Conflict { kind, name } => match kind {
                "collection" => ApiError::CollectionExists(name),
                "subject" => ApiError::SubjectExists(name),
                other => ApiError::Internal(format!("{other} '{name}' conflicts")),
            },
            e @ (StoreError::BadUrl(_) | StoreError::Db(_) | StoreError::Migrate(_) | StoreError::Corrupt(_)) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<GalleryError> for ApiError {
    fn from(e: GalleryError) -> Self {
        match e {
            GalleryError::Store(s) => s.into(),
            GalleryError::ModelNotLoaded(m) => ApiError::UnknownModel(m),
            GalleryError::Dimension { got, expected } => ApiError::InvalidField {
                field: "embedding".into(),
                reason: format!("has {got} values; this collection's model makes {expected}"),
            },
            GalleryError::EmptySubject(s) => ApiError::EmptySubject(s),
            GalleryError::Runtime(r) => r.into(),
            e @ (GalleryError::Pipeline(_)
            | GalleryError::Sync(_)
            | GalleryError::Task(_)
            | GalleryError::VersionChanged { .. }) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::jobs::JobError> for ApiError {
    fn from(e: crate::jobs::JobError) -> Self {
        use crate::jobs::JobError;
        match e {
            JobError::Invalid(m) => ApiError::InvalidJob(m),
            JobError::UnknownModel(m) => ApiError::UnknownModel(m),
            JobError::UnknownCollection(c) => ApiError::UnknownCollection(c),
            e @ JobError::OutsideDataRoot(_) => ApiError::PathOutsideDataRoot(e.to_string()),
            JobError::NotFound(id) => ApiError::UnknownJob(id),
            e @ JobError::WrongState { .. } => ApiError::JobState(e.to_string()),
            JobError::Store(s) => s.into(),
        }
    }
}

impl From<crate::catalog::CatalogError> for ApiError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        use crate::catalog::CatalogError;
        match e {
            CatalogError::UnknownModel(m) => ApiError::UnknownModel(m),
            e @ CatalogError::UnknownVersion(..) => ApiError::UnknownVersion(e.to_string()),
            CatalogError::Store(s) => s.into(),
            CatalogError::Gallery(g) => g.into(),
            CatalogError::Runtime(r) => r.into(),
            e @ (CatalogError::Model(_)
            | CatalogError::MissingWeights(..)
            | CatalogError::Io(..)
            | CatalogError::Task(_)) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid => ApiError::Unauthorized(e.to_string()),
            AuthError::Forbidden(_) => ApiError::Forbidden(e.to_string()),
            AuthError::TooManyFailures(secs) => ApiError::TooManyFailedKeys(secs),
            AuthError::BadScope(_) => ApiError::InvalidField { field: "scopes".into(), reason: e.to_string() },
            AuthError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        let detail = if status.is_server_error()
            && !matches!(self, ApiError::NotReady | ApiError::ModelsFailing(_) | ApiError::Timeout(_))
        {
            tracing::error!(error = %self, "request failed");
            "internal error".to_string()
        } else {
            self.to_string()
        };
        let body = Problem {
            kind: format!("/problems/{code}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            code: code.to_string(),
            detail,
            field: self.field(),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if matches!(self, ApiError::Unauthorized(_)) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, ApiError::Overloaded | ApiError::NotReady | ApiError::ModelsFailing(_)) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::TooManyFailedKeys(secs) = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
