//! Gotify: the message posted to the server's `/message` with an application token, at a
//! higher priority when something failed, opening the job in the UI when clicked.

use crate::{Message, NotifyError, Secret, answered, client, host_of, invalid, url};

pub(crate) fn check(secret: &Secret) -> Result<String, NotifyError> {
    if secret.token.as_deref().is_none_or(|t| t.is_empty()) {
        return Err(invalid("token", "give the Gotify application's token"));
    }
    host_of(secret)
}

pub(crate) async fn send(secret: &Secret, message: &Message<'_>) -> Result<String, NotifyError> {
    let mut url = url(secret)?;
    url.path_segments_mut()
        .map_err(|()| invalid("url", "not a server's URL"))?
        .pop_if_empty()
        .push("message");
    let mut body = serde_json::json!({
        "title": message.title,
        "message": message.text,
        "priority": if message.failure { 8 } else { 4 },
    });
    if let Some(link) = message.link {
        body["extras"] = serde_json::json!({"client::notification": {"click": {"url": link}}});
    }
    let request = client()
        .post(url)
        .header("X-Gotify-Key", secret.token.as_deref().unwrap_or_default())
        .json(&body);
    answered(request.send().await).await
}
