//! A Discord webhook: the message as the post's content (at most 2000 characters), mentioning
//! no one whatever a job's name says.

use crate::{Message, NotifyError, Secret, answered, client, url};

pub(crate) async fn send(secret: &Secret, message: &Message<'_>) -> Result<String, NotifyError> {
    let content: String = format!("**{}**\n{}", message.title, message.text)
        .chars()
        .take(2000)
        .collect();
    let body = serde_json::json!({"content": content, "allowed_mentions": {"parse": []}});
    answered(client().post(url(secret)?).json(&body).send().await).await
}
