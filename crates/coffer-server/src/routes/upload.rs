//! Uploaded files (archives to restore, system backups): the raw body, or the form field
//! `archive` or `file` of a `multipart/form-data` body with an optional field `checksum`;
//! streamed to disk, synced, never larger than the server accepts.

use axum::body::Body;
use axum::http::{HeaderMap, header};

use crate::AppState;
use crate::error::ApiError;

/// Store the upload in `body` at `path` (removed again on failure); the checksum it came with
/// (header `X-Checksum-Sha256`, or the form field `checksum`), if any.
pub async fn receive(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    path: &std::path::Path,
) -> Result<Option<String>, ApiError> {
    let mut checksum = headers
        .get("x-checksum-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|c| c.starts_with("multipart/form-data"))
        .map(multer::parse_boundary)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("the form cannot be read: {e}")))?;
    let limit = state.max_upload_bytes;
    let stored = match form {
        None => store(path, body.into_data_stream(), limit).await,
        Some(boundary) => {
            let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
            let bad =
                |e: multer::Error| ApiError::BadRequest(format!("the form cannot be read: {e}"));
            let mut file = false;
            let mut result = Ok(());
            while result.is_ok() {
                let Some(field) = form.next_field().await.map_err(bad)? else {
                    break;
                };
                match field.name() {
                    Some("checksum") => {
                        checksum = Some(field.text().await.map_err(bad)?.trim().to_string())
                    }
                    Some("archive" | "file") if !file => {
                        file = true;
                        result = store(path, field, limit).await;
                    }
                    other => {
                        result = Err(ApiError::BadRequest(format!(
                            "unexpected form field {:?}: send the file in \"archive\" (or \"file\"), once, and optionally \"checksum\"",
                            other.unwrap_or("")
                        )))
                    }
                }
            }
            match result {
                Ok(()) if !file => Err(ApiError::BadRequest(
                    "the form has no field \"archive\" (or \"file\")".into(),
                )),
                other => other,
            }
        }
    };
    if let Err(e) = stored {
        let _ = tokio::fs::remove_file(path).await;
        return Err(e);
    }
    Ok(checksum)
}

/// Stream an upload to `path` (synced), refusing more than `limit` bytes and interrupted
/// transfers.
async fn store<E: std::fmt::Display>(
    path: &std::path::Path,
    stream: impl tokio_stream::Stream<Item = Result<bytes::Bytes, E>>,
    limit: u64,
) -> Result<(), ApiError> {
    use tokio::io::AsyncWriteExt;
    use tokio_stream::StreamExt;
    let mut stream = std::pin::pin!(stream);
    let mut file = tokio::fs::File::create(path).await.map_err(ApiError::io)?;
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the upload was interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::TooLarge(format!(
                "the archive is larger than the {limit} bytes this server accepts"
            )));
        }
        file.write_all(&chunk).await.map_err(ApiError::io)?;
    }
    file.sync_all().await.map_err(ApiError::io)
}
