//! Listing, reading and deleting stored files, and sharing them: share links made by a file's
//! owner (`links`), through which anyone downloads it without a token (`shared`).

mod download;
mod lifetime;
mod links;
mod shared;

use actix_web::{HttpResponse, middleware::from_fn, web};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::{
    access::{
        auth::{self, Owner},
        quota::{self, Quota},
        rate_limit,
    },
    api::{
        self,
        openapi::{
            Documented,
            responses::{Authenticated, NotFound},
        },
    },
    base::{error::ApiError, problem::Problem, telemetry},
    catalog::{
        listing::{self, Cursor},
        record::{self, FileObject, FileRecord},
    },
    storage::{RowOutcome, Storage},
};

/// `POST /files` is the uploads module's.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/files",
            web::resource("/files")
                .route(web::get().to(list))
                .wrap(from_fn(auth::identify)),
        )
        .with(__path_list),
    )
    .service(
        Documented::new(
            "/files/{id}",
            web::resource("/files/{id}")
                .route(web::get().to(metadata))
                .route(web::patch().to(lifetime::update))
                .route(web::delete().to(delete))
                .wrap(from_fn(auth::identify)),
        )
        .with(__path_metadata)
        .with(lifetime::__path_update)
        .with(__path_delete),
    )
    .service(
        Documented::new(
            "/files/{id}/content",
            web::resource("/files/{id}/content")
                .route(web::get().to(download::content))
                .route(web::head().to(download::content))
                .wrap(from_fn(auth::identify)),
        )
        .with(download::__path_content),
    )
    .service(
        Documented::new(
            "/files/{id}/links",
            web::resource("/files/{id}/links")
                .route(web::post().to(links::create))
                .route(web::get().to(links::list))
                .wrap(from_fn(auth::identify)),
        )
        .with(links::__path_create)
        .with(links::__path_list),
    )
    .service(
        Documented::new(
            "/files/{id}/links/{link}",
            web::resource("/files/{id}/links/{link}")
                .route(web::delete().to(links::revoke))
                .wrap(from_fn(auth::identify)),
        )
        .with(links::__path_revoke),
    )
    .service(
        Documented::new(
            "/shared/{secret}",
            web::resource("/shared/{secret}")
                .route(web::get().to(shared::content))
                .route(web::head().to(shared::content))
                .wrap(from_fn(rate_limit::by_address)),
        )
        .with(shared::__path_content),
    );
}

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Files per page.
    #[param(minimum = 1, maximum = 1000, default = 50)]
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    #[param(pattern = "^[0-9]{1,17}_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    files: Vec<FileObject>,
    /// Where the next page starts; `null` on the last page.
    next_cursor: Option<String>,
}

/// The caller's files, newest first, a page at a time (keyset pagination: pages do not shift
/// when files are added).
#[utoipa::path(get, path = "/files", tag = "files", security(("token" = [])),
    params(ListQuery),
    responses(
        (status = 200, body = Page, description = "a page of files, newest first"),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: a limit out of range or a cursor not valid"),
        Authenticated,
    ))]
async fn list(
    query: web::Query<ListQuery>,
    pool: web::Data<PgPool>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = match &query.cursor {
        Some(text) => Some(
            Cursor::decode(text)
                .ok_or_else(|| ApiError::InvalidRequest("cursor is not valid".into()))?,
        ),
        None => None,
    };
    let mut rows = listing::list(&pool, owner.user_id, limit, after).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| {
            Cursor {
                created_at: last.created_at,
                id: last.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(api::owned(&mut HttpResponse::Ok()).json(Page {
        files: rows.iter().map(FileRecord::to_object).collect(),
        next_cursor,
    }))
}

/// One file's metadata.
#[utoipa::path(get, path = "/files/{id}", tag = "files", security(("token" = [])),
    params(("id" = Uuid, Path, description = "the file's id")),
    responses((status = 200, body = FileObject, description = "the file's metadata"), NotFound, Authenticated))]
async fn metadata(
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    Ok(api::owned(&mut HttpResponse::Ok()).json(find(&pool, owner, *id).await?.to_object()))
}

async fn find(pool: &PgPool, owner: Owner, id: Uuid) -> Result<FileRecord, ApiError> {
    record::find(pool, owner.user_id, id)
        .await?
        .ok_or(ApiError::NotFound("file"))
}

/// Delete a file: its bytes and its row go together, and its size leaves the caller's usage.
#[utoipa::path(delete, path = "/files/{id}", tag = "files", security(("token" = [])),
    params(("id" = Uuid, Path, description = "the file's id")),
    responses((status = 204, description = "deleted"), NotFound, Authenticated))]
async fn delete(
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    storage: web::Data<Storage>,
    quota: web::Data<Quota>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    // Spawned so that a client hanging up cannot stop it between the unlink and the commit.
    telemetry::spawn(async move { delete_file(&pool, &storage, &quota, owner, id).await })
        .await
        .map_err(ApiError::internal)??;
    Ok(HttpResponse::NoContent().finish())
}

#[tracing::instrument(name = "db.delete_file", skip_all, fields(file_id = %id))]
async fn delete_file(
    pool: &PgPool,
    storage: &Storage,
    quota: &Quota,
    owner: Owner,
    id: Uuid,
) -> Result<(), ApiError> {
    let mut tx = pool.begin().await?;
    // An inline file's bytes go with its row (`file_contents` cascades).
    let inline = sqlx::query_scalar!(
        r#"
        WITH deleted AS (
            DELETE FROM files WHERE id = $1 AND owner_id = $2 RETURNING size, inline
        ), changed AS (
            INSERT INTO usage_changes (user_id, used_delta)
            SELECT $2, -size FROM deleted
        )
        SELECT inline FROM deleted
        "#,
        id,
        owner.user_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let entry = match inline {
        None => return Err(ApiError::NotFound("file")),
        Some(true) => None,
        Some(false) => {
            let entry = storage.begin_delete(id, &mut tx).await?;
            if entry.is_none() {
                tracing::warn!(%id, "deleting a row whose object was already missing");
            }
            entry
        }
    };
    let committed = tx.commit().await.map(Some);
    if let Some(entry) = entry {
        // Not committed: the row is still there, and the object comes back.
        entry.settle(RowOutcome::of(&committed)).await;
    }
    committed?;
    if let Err(error) = quota::apply_changes(quota.pool(), Some(owner.user_id)).await {
        tracing::warn!(%error, "could not apply usage changes; will retry");
    }
    Ok(())
}
