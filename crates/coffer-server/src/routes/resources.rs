//! Resources admins manage, each at `/api/<collection>` with the same six routes: list,
//! create, get, update (the fields given), delete (409 while something uses it) and test.
//! Their secrets are write-only: stored sealed, never returned. Operators may list and read
//! them, to name one in a job. The handlers are generic;
//! [`resource_routes!`] gives each kind its documented routes.

use std::sync::Arc;

use axum::http::StatusCode;
use coffer_jobs::Managed;
use coffer_types::{Check, ErrorBody};

use crate::AppState;
use crate::auth::{Admin, Auth, Operator};
use crate::error::ApiError;
use crate::extract::Json;

type Admitted = Auth<Admin>;
/// Who may read them (never their secrets): operators name them in jobs.
type Chooser = Auth<Operator>;

pub async fn list<R: Managed>(state: Arc<AppState>) -> Result<Json<Vec<R>>, ApiError> {
    Ok(Json(state.jobs.resources::<R>().await?))
}

pub async fn create<R: Managed>(
    state: Arc<AppState>,
    input: R::Input,
) -> Result<(StatusCode, Json<R>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.jobs.create_resource::<R>(input).await?),
    ))
}

pub async fn get<R: Managed>(state: Arc<AppState>, id: String) -> Result<Json<R>, ApiError> {
    Ok(Json(state.jobs.resource::<R>(&id).await?))
}

pub async fn update<R: Managed>(
    state: Arc<AppState>,
    id: String,
    update: R::Update,
) -> Result<Json<R>, ApiError> {
    Ok(Json(state.jobs.update_resource::<R>(&id, update).await?))
}

pub async fn delete<R: Managed>(state: Arc<AppState>, id: String) -> Result<StatusCode, ApiError> {
    state.jobs.delete_resource::<R>(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn test<R: Managed>(state: Arc<AppState>, id: String) -> Result<Json<Check>, ApiError> {
    Ok(Json(state.jobs.test_resource::<R>(&id).await?))
}

/// The documented routes of one kind of resource, as a module of handlers.
macro_rules! resource_routes {
    (
        $module:ident: $ty:ident, $input:ident, $update:ident;
        tag $tag:tt, collection $list:tt, item $item:tt, test $test:tt, id $id:tt;
        update $update_doc:tt; delete $delete_doc:tt; test_doc $test_doc:tt
    ) => {
        pub mod $module {
            use std::sync::Arc;

            use axum::extract::State;
            use axum::http::StatusCode;
            use coffer_types::{Check, ErrorBody, $input, $ty, $update};

            use crate::AppState;
            use crate::error::ApiError;
            use crate::extract::{Json, Path};

            /// Every one, without secrets; operators read them to choose one for a job.
            #[utoipa::path(get, path = $list, tag = $tag, security(("bearer" = ["operator"])),
                responses((status = 200, body = [$ty])))]
            pub async fn list(
                State(state): State<Arc<AppState>>,
                _: super::Chooser,
            ) -> Result<Json<Vec<$ty>>, ApiError> {
                super::list(state).await
            }

            #[utoipa::path(post, path = $list, tag = $tag, security(("bearer" = ["admin"])), request_body = $input,
                responses((status = 201, body = $ty), (status = 400, body = ErrorBody, description = "Names the invalid field"),
                    (status = 409, body = ErrorBody, description = "The name is taken")))]
            pub async fn create(
                State(state): State<Arc<AppState>>,
                _: super::Admitted,
                Json(input): Json<$input>,
            ) -> Result<(StatusCode, Json<$ty>), ApiError> {
                super::create(state, input).await
            }

            #[utoipa::path(get, path = $item, tag = $tag, security(("bearer" = ["operator"])),
                params(("id" = String, Path, description = $id)),
                responses((status = 200, body = $ty), (status = 404, body = ErrorBody)))]
            pub async fn get(
                State(state): State<Arc<AppState>>,
                _: super::Chooser,
                Path(id): Path<String>,
            ) -> Result<Json<$ty>, ApiError> {
                super::get(state, id).await
            }

            #[doc = $update_doc]
            #[utoipa::path(put, path = $item, tag = $tag, security(("bearer" = ["admin"])), request_body = $update,
                params(("id" = String, Path, description = $id)),
                responses((status = 200, body = $ty), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
                    (status = 409, body = ErrorBody)))]
            pub async fn update(
                State(state): State<Arc<AppState>>,
                _: super::Admitted,
                Path(id): Path<String>,
                Json(u): Json<$update>,
            ) -> Result<Json<$ty>, ApiError> {
                super::update(state, id, u).await
            }

            #[doc = $delete_doc]
            #[utoipa::path(delete, path = $item, tag = $tag, security(("bearer" = ["admin"])),
                params(("id" = String, Path, description = $id)),
                responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
                    (status = 409, body = ErrorBody, description = "In use")))]
            pub async fn delete(
                State(state): State<Arc<AppState>>,
                _: super::Admitted,
                Path(id): Path<String>,
            ) -> Result<StatusCode, ApiError> {
                super::delete::<$ty>(state, id).await
            }

            #[doc = $test_doc]
            #[utoipa::path(post, path = $test, tag = $tag, security(("bearer" = ["admin"])),
                params(("id" = String, Path, description = $id)),
                responses((status = 200, body = Check), (status = 404, body = ErrorBody)))]
            pub async fn test(
                State(state): State<Arc<AppState>>,
                _: super::Admitted,
                Path(id): Path<String>,
            ) -> Result<Json<Check>, ApiError> {
                super::test::<$ty>(state, id).await
            }
        }
    };
}

resource_routes! {
    repositories: Repository, RepositoryInput, RepositoryUpdate;
    tag "repositories", collection "/api/repositories", item "/api/repositories/{id}",
        test "/api/repositories/{id}/test", id "Repository id";
    update "Replace the fields given; `url` and `encrypted` cannot change while jobs use it (409).";
    delete "Forget a repository (its data stays where it is); 409 while jobs use it.";
    test_doc "Whether the repository can be reached with its settings, and what it holds (a repository that opens with the server's key, or nothing yet), or why not."
}

resource_routes! {
    credentials: Credential, CredentialInput, CredentialUpdate;
    tag "credentials", collection "/api/credentials", item "/api/credentials/{id}",
        test "/api/credentials/{id}/test", id "Credential id";
    update "Replace the fields given; an empty `password` removes it.";
    delete "Delete a credential; 409 while a job names it.";
    test_doc "Whether the server answers with this credential: `ok` and the databases it lists, or why not (a wrong password, a server that is down)."
}

resource_routes! {
    notification_channels: NotificationChannel, ChannelInput, ChannelUpdate;
    tag "notifications", collection "/api/notification-channels",
        item "/api/notification-channels/{id}", test "/api/notification-channels/{id}/test",
        id "Channel id";
    update "Replace the fields given; the secret parts given (`url`, `secret`, `token`, `password`) replace theirs, an empty one removes it.";
    delete "Delete a channel and its notifications.";
    test_doc "Send the channel a test message now: `ok` and what the receiver answered, or why it did not take it (listed with the notifications too)."
}

/// The databases of the server behind a credential: what a `postgres` or `mysql` source can
/// name (the job form offers them). 502 when the server does not answer.
#[utoipa::path(get, path = "/api/credentials/{id}/databases", tag = "credentials", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = [String]), (status = 404, body = ErrorBody),
        (status = 502, body = ErrorBody, description = "The database server does not answer")))]
pub async fn databases(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    _: Chooser,
    crate::extract::Path(id): crate::extract::Path<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(state.jobs.credential_databases(&id).await?))
}
