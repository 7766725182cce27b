//! `GET`/`HEAD /shared/{secret}`: a file downloaded through a share link, without a token, as
//! its owner downloads it (`download::serve`), and never cached by anything shared.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use sqlx::PgPool;
use time::OffsetDateTime;

use super::download;
use crate::{
    api::openapi::responses::NotFound,
    base::{error::ApiError, problem::Problem},
    catalog::links,
    storage::Storage,
};

/// The file a share link names. A `GET` whose body reaches the file's last byte counts as one
/// of the link's downloads (a whole file, or the range that ends a resumed download), counted
/// before that last chunk is sent: one cut off earlier does not count, and neither do `HEAD`,
/// `304` or a range that stops short of the end.
#[utoipa::path(method(get, head), path = "/shared/{secret}", tag = "files",
    operation_id = "shared_content",
    params(
        ("secret" = String, Path, description = "the secret of the link's URL"),
        ("Range" = Option<String>, Header, description = "one range: `bytes=0-99`, `bytes=100-`, `bytes=-100`"),
        ("If-None-Match" = Option<String>, Header, description = "`304` when it names the ETag"),
        ("If-Range" = Option<String>, Header, description = "the range only if this ETag still matches"),
    ),
    responses(
        (status = 200, description = "the whole file", content_type = "*/*", body = Vec<u8>,
            headers(("ETag" = String), ("Accept-Ranges" = String), ("Content-Disposition" = String),
                ("Cache-Control" = String, description = "`private`"))),
        (status = 206, description = "the range asked for", content_type = "*/*", body = Vec<u8>,
            headers(("Content-Range" = String))),
        (status = 304, description = "unchanged since the ETag given"),
        (status = 410, body = Problem, content_type = "application/problem+json",
            description = "`link_expired` or `link_used_up`"),
        (status = 416, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: the range lies beyond the file",
            headers(("Content-Range" = String, description = "`bytes */<size>`"))),
        (status = 429, body = Problem, content_type = "application/problem+json",
            description = "`rate_limited`: too many requests from this address"),
        NotFound,
    ))]
pub async fn content(
    req: HttpRequest,
    secret: web::Path<String>,
    pool: web::Data<PgPool>,
    storage: web::Data<Storage>,
) -> Result<HttpResponse, ApiError> {
    let unknown = || ApiError::NotFound("link");
    let hash = links::secret_hash(&secret).ok_or_else(unknown)?;
    let (link, file) = links::shared(&pool, &hash).await?.ok_or_else(unknown)?;
    if link
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(ApiError::LinkExpired);
    }
    if let Some(max) = link.max_downloads
        && link.downloads >= max
    {
        return Err(ApiError::LinkUsedUp(max));
    }
    let counted = pool.get_ref().clone();
    let whole: download::WholeSent = Box::pin(async move {
        if let Err(error) = links::count_download(&counted, link.id).await {
            tracing::warn!(link = %link.id, %error, "could not count a download");
        }
    });
    let mut response = download::serve(&req, &file, &pool, &storage, Some(whole)).await?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private"),
    );
    Ok(response)
}
