//! What NHS Notify's answers mean for each message of a request: the ids it gave them, or
//! our error class.
//!
//! A batch stands or falls as one: a refused batch sent none of its messages, so the
//! messages its errors point at (`/data/attributes/messages/3/recipient/nhsNumber`) fail
//! and the others are retried without them.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use crate::providers::http::scrub;
use crate::providers::{Accepted, SendError};

/// The most of an answer read: a batch's answer lists an id per message (about 80 bytes
/// each), so 45,000 messages need under 4 MB.
pub const ANSWER_LIMIT: usize = 8 * 1024 * 1024;

/// Reads a response body, giving up past `limit` bytes.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is longer than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A JSON:API answer to a batch (`data.attributes.messages[]`) or to one message
/// (`data.id`).
#[derive(Deserialize)]
struct Created {
    data: CreatedData,
}

#[derive(Deserialize)]
struct CreatedData {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    attributes: Option<CreatedAttributes>,
}

#[derive(Deserialize)]
struct CreatedAttributes {
    #[serde(default)]
    messages: Vec<CreatedMessage>,
}

#[derive(Deserialize)]
struct CreatedMessage {
    #[serde(rename = "messageReference")]
    message_reference: String,
    id: String,
}

/// NHS Notify's error body: `{"errors": [{"code", "title", "detail", "source": {"pointer"}}]}`.
#[derive(Default, Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Default, Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    source: Option<Source>,
}

#[derive(Default, Deserialize)]
struct Source {
    #[serde(default)]
    pointer: String,
}

/// The ids NHS Notify gave an accepted request's messages, by our message reference. A
/// single message's answer gives its id to `single`. An answer that cannot be read leaves
/// the messages accepted without an id (retrying could send them twice).
pub fn accepted(body: &[u8], single: Option<&str>) -> HashMap<String, Accepted> {
    let mut ids = HashMap::new();
    let Ok(created) = serde_json::from_slice::<Created>(body) else {
        tracing::warn!("NHS Notify accepted a request but its answer could not be read");
        return ids;
    };
    if let (Some(reference), Some(id)) = (single, created.data.id.clone()) {
        if created
            .data
            .attributes
            .as_ref()
            .is_none_or(|a| a.messages.is_empty())
        {
            ids.insert(
                reference.to_string(),
                Accepted {
                    provider_ref: Some(id),
                },
            );
        }
    }
    for message in created
        .data
        .attributes
        .map(|a| a.messages)
        .unwrap_or_default()
    {
        ids.insert(
            message.message_reference,
            Accepted {
                provider_ref: Some(message.id),
            },
        );
    }
    ids
}

/// What a refused request means for each of its `count` messages (in request order).
pub fn refused(
    provider: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    count: usize,
) -> Vec<SendError> {
    let errors = serde_json::from_slice::<Errors>(body)
        .unwrap_or_default()
        .errors;
    let detail = if errors.is_empty() {
        "no NHS Notify error body".to_string()
    } else {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.code, scrub(&e.title)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let reason = format!("{provider}: HTTP {}: {detail}", status.as_u16());
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return vec![
            SendError::Retryable {
                reason,
                retry_after,
            };
            count
        ];
    }
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        tracing::error!(
            provider,
            status = status.as_u16(),
            "NHS Notify refused our access token: check the application's access to the API"
        );
    }
    // Errors naming messages of the request: those fail, the rest go again without them.
    let mut named: HashMap<usize, SendError> = HashMap::new();
    for error in &errors {
        let Some(pointer) = error.source.as_ref().map(|s| s.pointer.as_str()) else {
            continue;
        };
        let Some(index) = message_index(pointer, count) else {
            continue;
        };
        let reason = format!(
            "{provider}: HTTP {}: {}: {} at {pointer}",
            status.as_u16(),
            error.code,
            scrub(&error.title)
        );
        let class = if pointer.contains("/recipient/") {
            SendError::BadRecipient { reason }
        } else {
            SendError::Permanent { reason }
        };
        named.entry(index).or_insert(class);
    }
    if named.is_empty() {
        return vec![SendError::Permanent { reason }; count];
    }
    (0..count)
        .map(|i| {
            named.remove(&i).unwrap_or_else(|| SendError::Retryable {
                reason: format!("{reason} (another message of its batch was refused)"),
                retry_after: None,
            })
        })
        .collect()
}

/// The message a JSON pointer into a request names: `/data/attributes/messages/{i}/...`
/// in a batch, anything under `/data/attributes/` in a single message's request.
fn message_index(pointer: &str, count: usize) -> Option<usize> {
    if let Some(rest) = pointer.strip_prefix("/data/attributes/messages/") {
        let index: usize = rest.split('/').next()?.parse().ok()?;
        return (index < count).then_some(index);
    }
    let single = count == 1
        && (pointer.starts_with("/data/attributes/recipient")
            || pointer.starts_with("/data/attributes/personalisation")
            || pointer.starts_with("/data/attributes/originator"));
    single.then_some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_gives_each_reference_its_id() {
        let body = br#"{"data":{"type":"MessageBatch","id":"2ZljUiS8NjJNs95PqiYOO7gAfJb",
            "attributes":{"messageBatchReference":"b","routingPlan":{"id":"r","version":"1"},
            "messages":[{"messageReference":"m1","id":"K1"},{"messageReference":"m2","id":"K2"}]}}}"#;
        let ids = accepted(body, None);
        assert_eq!(ids["m2"].provider_ref.as_deref(), Some("K2"));
        let single =
            br#"{"data":{"type":"Message","id":"K9","attributes":{"messageReference":"m9"}}}"#;
        assert_eq!(
            accepted(single, Some("m9"))["m9"].provider_ref.as_deref(),
            Some("K9")
        );
        assert!(accepted(b"not json", None).is_empty());
    }

    #[test]
    fn refusals_fail_the_messages_named_and_retry_the_rest() {
        let body = br#"{"errors":[{"code":"CM_INVALID_NHS_NUMBER","title":"Invalid nhs number",
            "source":{"pointer":"/data/attributes/messages/1/recipient/nhsNumber"}}]}"#;
        let classes = refused("n", StatusCode::BAD_REQUEST, None, body, 3);
        assert!(matches!(classes[0], SendError::Retryable { .. }));
        assert!(matches!(classes[1], SendError::BadRecipient { .. }));
        assert!(matches!(classes[2], SendError::Retryable { .. }));
        let wait = Some(Duration::from_secs(5));
        let busy = refused("n", StatusCode::TOO_MANY_REQUESTS, wait, b"", 2);
        assert!(busy.iter().all(
            |c| matches!(c, SendError::Retryable { retry_after, .. } if *retry_after == wait)
        ));
        let plan = refused("n", StatusCode::NOT_FOUND, None, b"{}", 2);
        assert!(plan
            .iter()
            .all(|c| matches!(c, SendError::Permanent { .. })));
        let one = br#"{"errors":[{"code":"x","title":"t","source":{"pointer":"/data/attributes/recipient/nhsNumber"}}]}"#;
        assert!(matches!(
            refused("n", StatusCode::BAD_REQUEST, None, one, 1)[0],
            SendError::BadRecipient { .. }
        ));
    }
}
