//! A Slack incoming webhook (or one of the chat servers that take the same: Mattermost,
//! Rocket.Chat): the message as the post's text.

use crate::{Message, NotifyError, Secret, answered, client, url};

pub(crate) async fn send(secret: &Secret, message: &Message<'_>) -> Result<String, NotifyError> {
    let body = serde_json::json!({"text": format!("*{}*\n{}", message.title, message.text)});
    answered(client().post(url(secret)?).json(&body).send().await).await
}
