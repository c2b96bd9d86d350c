//! Authentication and authorization: passwords, session tokens, API keys, and the role
//! extractors that every protected handler takes.
//!
//! - Passwords: argon2id, hashed and verified on the blocking pool; an unknown user name is
//!   verified against a dummy hash, so it costs the same as a wrong password.
//! - Session tokens: HS256 JWTs carrying the user and a session id. The session row is checked
//!   on every request, so logout and revocation take effect at once; rotating the signing
//!   secret invalidates every token.
//! - API keys: `cf_` + 64 hex digits (32 random bytes), stored as SHA-256, acting with the lower
//!   of the key's role and its owner's current role.
//!
//! Authorization is one mechanism: a handler names the least role it needs by taking
//! `Auth<Viewer>`, `Auth<Operator>` or `Auth<Admin>`; no credentials → 401, too low → 403.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use chrono::{DateTime, Duration, Utc};
use coffer_types::{Role, User};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::AppState;
use crate::error::ApiError;

/// The cookie that login sets; it carries the same token as the response body.
pub const SESSION_COOKIE: &str = "coffer_session";
/// Name of the token signing secret in the metadata store.
pub const JWT_SECRET: &str = "jwt_signing_key";
const KEY_PREFIX: &str = "cf_";

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random number generator failed");
    b
}

// ---- passwords ----

/// argon2id with OWASP's recommended cost (19 MiB, 2 passes): about 20–40 ms here.
fn argon2() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).expect("valid argon2 parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// `argon2id$m=19456,t=2,p=1$<salt hex>$<hash hex>`; the parameters travel with the hash so
/// that they can change later without invalidating stored passwords.
pub(crate) fn hash_password_blocking(password: &str) -> String {
    let salt: [u8; 16] = random_bytes();
    let a = argon2();
    let mut out = [0u8; 32];
    a.hash_password_into(password.as_bytes(), &salt, &mut out)
        .expect("argon2 accepts these lengths");
    let p = a.params();
    format!(
        "argon2id$m={},t={},p={}${}${}",
        p.m_cost(),
        p.t_cost(),
        p.p_cost(),
        hex::encode(salt),
        hex::encode(out)
    )
}

fn verify_password_blocking(password: &str, encoded: &str) -> bool {
    let parse = || -> Option<bool> {
        let mut parts = encoded.split('$');
        if parts.next()? != "argon2id" {
            return None;
        }
        let mut cost = [0u32; 3];
        for (slot, kv) in cost.iter_mut().zip(parts.next()?.split(',')) {
            *slot = kv.split_once('=')?.1.parse().ok()?;
        }
        let salt = hex::decode(parts.next()?).ok()?;
        let expected = hex::decode(parts.next()?).ok()?;
        let params = argon2::Params::new(cost[0], cost[1], cost[2], Some(expected.len())).ok()?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = vec![0u8; expected.len()];
        a.hash_password_into(password.as_bytes(), &salt, &mut out)
            .ok()?;
        Some(aws_lc_rs::constant_time::verify_slices_are_equal(&out, &expected).is_ok())
    };
    parse().unwrap_or(false)
}

pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .map_err(ApiError::internal)
}

/// Whether `password` matches `encoded`; with no stored hash (unknown user), the same work is
/// done against a dummy hash and the answer is no.
pub async fn verify_password(
    password: String,
    encoded: Option<String>,
    dummy: Arc<str>,
) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || match encoded {
        Some(h) => verify_password_blocking(&password, &h),
        None => {
            verify_password_blocking(&password, &dummy);
            false
        }
    })
    .await
    .map_err(ApiError::internal)
}

/// A hash nobody's password matches, for unknown users.
pub fn dummy_hash() -> String {
    hash_password_blocking(&hex::encode(random_bytes::<16>()))
}

// ---- tokens ----

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id.
    sub: String,
    /// The session id.
    sid: String,
    iat: i64,
    exp: i64,
}

/// The signing key, replaced as a whole on rotation.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(<secret>)")
    }
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> TokenKeys {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    pub fn issue(
        &self,
        user_id: &str,
        session_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<String, ApiError> {
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            iat: Utc::now().timestamp(),
            exp: expires_at.timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    fn check(&self, token: &str) -> Result<Claims, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("the token has expired: log in again".into())
                }
                _ => ApiError::Unauthorized(
                    "the token is not valid (malformed, or signed with a rotated secret): log in again"
                        .into(),
                ),
            })
    }
}

/// Expiry of a session that starts or is refreshed now.
pub fn session_expiry(state: &AppState) -> DateTime<Utc> {
    Utc::now() + Duration::from_std(state.session_ttl).unwrap_or(Duration::hours(12))
}

/// `Set-Cookie` value for a session token (empty token and zero age: remove the cookie).
pub fn session_cookie(token: &str, max_age_secs: i64) -> String {
    format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}")
}

// ---- API keys ----

/// A new key and the hash under which it is stored.
pub fn new_api_key() -> (String, String) {
    let key = format!("{KEY_PREFIX}{}", hex::encode(random_bytes::<32>()));
    let hash = api_key_hash(&key);
    (key, hash)
}

pub fn api_key_hash(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// The part of a key shown in listings: enough to recognize it, useless to an attacker.
pub fn api_key_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + 8).collect()
}

// ---- the caller ----

/// Who is calling, and how.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    /// The role in effect: the user's, or for an API key the lower of the key's and the owner's.
    pub role: Role,
    pub key_id: Option<String>,
    pub session_id: Option<String>,
}

/// Filled by authentication (who), by [`AuditedRead`] (that a read is audited) and by
/// [`AuditSubject`] (what was acted on), read by the audit middleware after the handler ran.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Audited>>);

/// What the audit log records of a request besides its route and outcome.
#[derive(Debug, Default)]
pub struct Audited {
    pub actor: Actor,
    /// A read its handler asked to be audited.
    pub read: bool,
    /// What the request acted on when the path does not say (a file named in the body).
    pub subject: Option<String>,
}

/// Who a request acted as, as far as the audit log is concerned.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub key_id: Option<String>,
}

impl AuditSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Audited> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn set(&self, actor: Actor) {
        self.lock().actor = actor;
    }
    pub fn take(&self) -> Audited {
        std::mem::take(&mut *self.lock())
    }
}

/// A handler that takes this is audited though it only reads: what it gives out is sensitive
/// (an archive of a record, the repository key). Mutating requests are always audited.
#[derive(Debug)]
pub struct AuditedRead;

impl<S: Send + Sync> FromRequestParts<S> for AuditedRead {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.lock().read = true;
        }
        Ok(AuditedRead)
    }
}

/// Lets a handler name what it acted on, for the audit log (`target` becomes the path and
/// that name).
pub struct AuditSubject(Option<AuditSlot>);

impl AuditSubject {
    pub fn name(&self, subject: &str) {
        if let Some(slot) = &self.0 {
            slot.lock().subject = Some(subject.to_string());
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditSubject {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AuditSubject(parts.extensions.get::<AuditSlot>().cloned()))
    }
}

/// Record `actor` for the audit log of this request, if it is audited.
pub fn record_actor(extensions: &axum::http::Extensions, actor: Actor) {
    if let Some(slot) = extensions.get::<AuditSlot>() {
        slot.set(actor);
    }
}

fn bearer_or_cookie(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().unwrap_or_default();
        return match v.strip_prefix("Bearer ") {
            Some(t) if !t.trim().is_empty() => Ok(Some(t.trim())),
            _ => Err(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>`".into(),
            )),
        };
    }
    Ok(session_cookie_value(headers))
}

pub fn session_cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A session token's user, if the token is valid and its session live.
pub async fn session_user(state: &AppState, token: &str) -> Result<(User, String), ApiError> {
    let claims = state.token_keys().check(token)?;
    let session = state.db.session(&claims.sid).await?;
    match session {
        Some(s) if !s.revoked && s.expires_at > Utc::now() && s.user_id == claims.sub => {}
        Some(s) if s.revoked => {
            return Err(ApiError::Unauthorized(
                "the session has ended (logged out or revoked): log in again".into(),
            ));
        }
        _ => {
            return Err(ApiError::Unauthorized(
                "the session has expired: log in again".into(),
            ));
        }
    }
    let user = state
        .db
        .user(&claims.sub)
        .await
        .map_err(|_| ApiError::Unauthorized("the user no longer exists".into()))?;
    Ok((user, claims.sid))
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    if let Some(v) = parts.headers.get("x-api-key") {
        let key = v.to_str().unwrap_or_default().trim();
        let unknown = || ApiError::Unauthorized("the API key is not valid".into());
        if !key.starts_with(KEY_PREFIX) {
            return Err(unknown());
        }
        let rec = state
            .db
            .key_by_hash(&api_key_hash(key))
            .await?
            .ok_or_else(unknown)?;
        if rec.revoked {
            return Err(ApiError::Unauthorized("the API key was revoked".into()));
        }
        if rec.info.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(ApiError::Unauthorized("the API key has expired".into()));
        }
        let user = state.db.user(&rec.info.user_id).await?;
        if rec
            .info
            .last_used_at
            .is_none_or(|t| Utc::now() - t > Duration::minutes(1))
        {
            state.db.touch_key(&rec.info.id).await?;
        }
        return Ok(Caller {
            role: rec.info.role.min(user.role),
            user,
            key_id: Some(rec.info.id),
            session_id: None,
        });
    }
    let token = bearer_or_cookie(&parts.headers)?.ok_or_else(|| {
        ApiError::Unauthorized(
            "authentication required: send `Authorization: Bearer <token>`, the session cookie, or `X-API-Key`"
                .into(),
        )
    })?;
    let (user, sid) = session_user(state, token).await?;
    Ok(Caller {
        role: user.role,
        user,
        key_id: None,
        session_id: Some(sid),
    })
}

/// The least role a handler needs.
pub trait MinRole: Send + Sync {
    const ROLE: Role;
}

#[derive(Debug)]
pub struct Viewer;
#[derive(Debug)]
pub struct Operator;
#[derive(Debug)]
pub struct Admin;

impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Operator {
    const ROLE: Role = Role::Operator;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// An authenticated caller holding at least role `R`.
#[derive(Debug)]
pub struct Auth<R: MinRole>(pub Caller, pub PhantomData<R>);

impl<R: MinRole> FromRequestParts<Arc<AppState>> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        record_actor(
            &parts.extensions,
            Actor {
                user_id: Some(caller.user.id.clone()),
                username: Some(caller.user.username.clone()),
                key_id: caller.key_id.clone(),
            },
        );
        if caller.role < R::ROLE {
            return Err(ApiError::Forbidden(format!(
                "this needs the {} role; {} has {}",
                R::ROLE,
                if caller.key_id.is_some() {
                    "this API key"
                } else {
                    "your account"
                },
                caller.role
            )));
        }
        Ok(Auth(caller, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let h = hash_password_blocking("a long enough password");
        assert!(verify_password_blocking("a long enough password", &h));
        assert!(!verify_password_blocking("a long enough passwore", &h));
        assert!(!verify_password_blocking("x", "garbage"));
        assert_ne!(
            h,
            hash_password_blocking("a long enough password"),
            "salted"
        );
    }

    #[test]
    fn keys_have_the_documented_shape() {
        let (key, hash) = new_api_key();
        assert!(key.starts_with("cf_") && key.len() == 67);
        assert_eq!(hash, api_key_hash(&key));
        assert_eq!(api_key_prefix(&key).len(), 11);
    }
}
