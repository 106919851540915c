//! The Cloud Storage JSON API as larder-gcs speaks it: failures and their classification (retried
//! by larder-bucket's [`retrying`](larder_bucket::error::retrying)), the JSON it reads and the
//! resource its uploads carry.
//!
//! Every request is a plain JSON API call (`/storage/v1/…`, `/upload/storage/v1/…`) made with
//! `google-cloud-auth`'s credentials, emulators included: the official `google-cloud-storage`
//! crate lists and deletes over gRPC only, which no emulator serves, and gathers a whole upload
//! in memory.
//!
//! Temporary failures (worth a retry): time-outs, connection failures, truncated responses, and
//! the statuses [`status_is_temporary`] names (408, 429, 5xx but 501). Everything else is
//! permanent, with the service's message in the text so a missing bucket or refused credentials
//! read as such.

use std::time::Duration;

use larder_bucket::Listed;
use larder_bucket::error::{RequestError, status_is_temporary, store_error};
use larder_core::Error;
use reqwest_gcs::{RequestBuilder, Response};
use serde_json::Value;

pub(crate) const STORE: &str = "larder-gcs";

const CREDENTIALS: &str =
    "Application Default Credentials, or LARDER_GCS_ANONYMOUS=1 for an emulator";

/// A failure of one JSON API request, before classification.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GcsError {
    /// The service answered with an error status.
    #[error("HTTP {0}: {1}")]
    Status(u16, String),
    /// No answer, or one cut short: connect, I/O, time-out.
    #[error("{0}")]
    Transport(#[from] reqwest_gcs::Error),
    /// Credentials could not be obtained.
    #[error("no credentials: {0} (set up {CREDENTIALS})")]
    Auth(String),
    /// A response that is not what the JSON API documents.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl RequestError for GcsError {
    fn status(&self) -> Option<u16> {
        match self {
            GcsError::Status(status, _) => Some(*status),
            _ => None,
        }
    }

    fn is_temporary(&self) -> bool {
        match self {
            GcsError::Status(status, _) => status_is_temporary(*status),
            GcsError::Transport(e) => !e.is_builder() && !e.is_redirect(),
            GcsError::Auth(_) | GcsError::Decode(_) => false,
        }
    }

    fn timed_out(after: Duration) -> Self {
        GcsError::Status(408, format!("no answer within {after:?}"))
    }

    /// Classified, with `what` (the operation) in front and a hint where one helps.
    fn into_error(self, what: &str) -> Error {
        let hint = match self.status() {
            Some(401 | 403) => format!(" (check the credentials: {CREDENTIALS})"),
            Some(404) => " (does the bucket exist?)".to_owned(),
            _ => String::new(),
        };
        let (message, temporary) = (format!("{self}{hint}"), self.is_temporary());
        store_error(STORE, what, message, temporary, Some(Box::new(self)))
    }
}

/// Send `req`; an error status becomes [`GcsError::Status`] with the service's message.
pub(crate) async fn send(req: RequestBuilder) -> Result<Response, GcsError> {
    let resp = req.send().await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
        .unwrap_or(body);
    Err(GcsError::Status(
        status.as_u16(),
        message.chars().take(500).collect(),
    ))
}

/// An object resource (from a listing or a metadata request): its name, size, update time,
/// generation (the version) and custom metadata.
pub(crate) fn listed(v: &Value) -> Option<Listed> {
    // The JSON API sends 64-bit numbers as strings.
    let num = |k: &str| match v.get(k)? {
        Value::String(s) => s.parse::<u64>().ok(),
        n => n.as_u64(),
    };
    let updated = v.get("updated").and_then(Value::as_str);
    let updated = updated.and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let metadata = v
        .get("metadata")
        .and_then(Value::as_object)
        .into_iter()
        .flatten();
    Some(Listed {
        key: v.get("name")?.as_str()?.to_owned(),
        size: num("size").unwrap_or(0),
        modified_ms: updated.map_or(0, |t| t.as_millisecond().max(0) as u64),
        version: num("generation").map(|g| g.to_string()).unwrap_or_default(),
        metadata: metadata
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect(),
    })
}

/// One page of a listing: its objects and the next page's token.
pub(crate) fn page(v: &Value) -> (Vec<Listed>, Option<String>) {
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let next = v.get("nextPageToken").and_then(Value::as_str);
    let next = next.filter(|t| !t.is_empty()).map(str::to_owned);
    (items.filter_map(listed).collect(), next)
}

/// An upload's object resource: name, content type and custom metadata.
pub(crate) fn resource(key: &str, metadata: &[(&str, String)]) -> String {
    let metadata: serde_json::Map<_, _> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(v.as_str())))
        .collect();
    let resource = serde_json::json!({
        "name": key,
        "contentType": "application/octet-stream",
        "metadata": metadata,
    });
    resource.to_string()
}

#[cfg(test)]
mod tests {
    use larder_bucket::error::found;

    use super::*;

    #[test]
    fn object_resources_parse() {
        let v: Value = serde_json::from_str(
            r#"{"name":"p/entries/x","size":"12","generation":"1795455369923341",
                "updated":"2026-11-23T17:36:09.92334Z","metadata":{"larder-size":"99"}}"#,
        )
        .unwrap();
        let o = listed(&v).unwrap();
        assert_eq!((o.size, o.version.as_str()), (12, "1795455369923341"));
        assert_eq!(o.number("larder-size"), Some(99));
        assert!(o.modified_ms > 1_700_000_000_000);
        let (items, next) = page(&serde_json::json!({"items":[v], "nextPageToken":"t"}));
        assert_eq!((items.len(), next.as_deref()), (1, Some("t")));
    }

    #[test]
    fn failures_are_classified_with_hints() {
        let e = GcsError::Status(503, "m".into()).into_error("reading x");
        assert!(e.is_temporary(), "{e}");
        assert!(e.to_string().contains("reading x: HTTP 503: m"), "{e}");
        let e = GcsError::Status(403, "m".into()).into_error("x");
        assert!(e.to_string().contains("LARDER_GCS_ANONYMOUS=1") && !e.is_temporary());
        assert!(matches!(
            found::<(), _>(Err(GcsError::Status(404, "".into())), "x"),
            Ok(None)
        ));
        assert!(found::<(), _>(Err(GcsError::Status(412, "".into())), "x").is_err());
    }
}
