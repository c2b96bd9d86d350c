//! ntfy: the channel's URL names the server and the topic (`https://ntfy.sh/<topic>`); the
//! message is published as JSON to the server (so that any job name fits), louder when
//! something failed, opening the job in the UI when clicked; with the topic's access token
//! when it has one.

use crate::{Message, NotifyError, Secret, answered, client, host_of, invalid, url};

/// The server's URL and the topic.
fn topic(secret: &Secret) -> Result<(reqwest::Url, String), NotifyError> {
    let mut url = url(secret)?;
    let topic = url
        .path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("url", "name the topic: https://ntfy.sh/<topic>"))?;
    url.path_segments_mut()
        .map_err(|()| invalid("url", "not a server's URL"))?
        .pop();
    Ok((url, topic))
}

pub(crate) fn check(secret: &Secret) -> Result<String, NotifyError> {
    topic(secret)?;
    host_of(secret)
}

pub(crate) async fn send(secret: &Secret, message: &Message<'_>) -> Result<String, NotifyError> {
    let (server, topic) = topic(secret)?;
    let mut body = serde_json::json!({
        "topic": topic,
        "title": message.title,
        "message": message.text,
        "priority": if message.failure { 4 } else { 3 },
        "tags": [if message.failure { "warning" } else { "white_check_mark" }],
    });
    if let Some(link) = message.link {
        body["click"] = link.into();
    }
    let mut request = client().post(server).json(&body);
    if let Some(token) = secret.token.as_deref().filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token);
    }
    answered(request.send().await).await
}
