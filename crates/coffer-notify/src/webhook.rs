//! A generic webhook: the message's JSON body POSTed to the channel's URL, signed with the
//! channel's secret so that the receiver can tell it came from this Coffer, unchanged:
//! `X-Coffer-Signature: sha256=<hex HMAC-SHA256 of the body>`.

use crate::{Message, NotifyError, Secret, answered, client, host_of, invalid, url};

pub(crate) fn check(secret: &Secret) -> Result<String, NotifyError> {
    if secret.secret.as_deref().is_none_or(|s| s.is_empty()) {
        return Err(invalid(
            "secret",
            "give the secret the body is signed with (X-Coffer-Signature)",
        ));
    }
    host_of(secret)
}

pub(crate) async fn send(secret: &Secret, message: &Message<'_>) -> Result<String, NotifyError> {
    let signature = sign(
        secret.secret.as_deref().unwrap_or_default(),
        message.payload.as_bytes(),
    );
    let request = client()
        .post(url(secret)?)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Coffer-Signature", signature)
        .body(message.payload.to_string());
    answered(request.send().await).await
}

/// The signature of `body` with `secret`: `sha256=` and the hex HMAC-SHA256.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, body);
    format!("sha256={}", hex::encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            super::sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
