//! A file's share links, for its owner: made (`POST /files/{id}/links`), listed and revoked
//! (`DELETE /files/{id}/links/{link}`). A link's URL carries its secret, which only its
//! creation's answer shows: the database keeps the secret's hash.

use actix_web::{HttpResponse, http::header, web};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    access::auth::Owner,
    api::{
        self, lifetimes,
        openapi::responses::{Authenticated, NotFound},
    },
    base::{
        configuration::SharingSettings, error::ApiError, error_code::FieldError, problem::Problem,
    },
    catalog::links::{self, LinkRecord},
};

/// What a new link is to allow.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    /// How long the link lives: a whole number (1 to 4 digits) of seconds, minutes, hours, days
    /// or weeks (`90s`, `30m`, `12h`, `7d`, `2w`), at most `sharing.max_expiry_secs`. Absent or
    /// `null`: `sharing.default_expiry_secs`.
    #[schema(example = "7d", pattern = r"^[1-9][0-9]{0,3}[smhdw]$")]
    expires_in: Option<String>,
    /// Whole downloads the link allows; absent or `null`: no limit.
    #[serde(default, deserialize_with = "crate::api::whole_number")]
    #[schema(minimum = 1, maximum = 2147483647)]
    max_downloads: Option<i64>,
}

/// A share link. `url` (which carries the secret) is in its creation's answer only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "019aeb2c-7d1e-7f3a-9c4b-2e5f8a1d3c6b",
    "url": "/shared/q0fW2Xv3o6tQ1hL9yB8mZr4KcJ5nUe7aPgSdTiHxVwY",
    "file_id": "019a6b2c-7d1e-7f3a-9c4b-2e5f8a1d3c6b",
    "created_at": "2026-12-04T10:00:00Z",
    "expires_at": "2026-12-11T10:00:00Z",
    "max_downloads": null,
    "downloads": 0
}))]
pub struct LinkObject {
    id: Uuid,
    /// Where anyone downloads the file without a token (relative to this server).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    file_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// `null`: until revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    max_downloads: Option<i32>,
    /// Whole downloads so far.
    downloads: i32,
}

impl LinkObject {
    fn of(link: &LinkRecord, secret: Option<&str>) -> Self {
        Self {
            id: link.id,
            url: secret.map(|secret| format!("/shared/{secret}")),
            file_id: link.file_id,
            created_at: link.created_at,
            expires_at: link.expires_at,
            max_downloads: link.max_downloads,
            downloads: link.downloads,
        }
    }
}

/// A link that downloads the file without a token, until it expires, reaches its
/// `max_downloads`, or is revoked, and at most until the file is deleted.
#[utoipa::path(post, path = "/files/{id}/links", tag = "files", operation_id = "create_link",
    security(("token" = [])),
    params(("id" = Uuid, Path, description = "the file's id")),
    request_body(content = Option<NewLink>, description = "an empty body takes the defaults"),
    responses(
        (status = 201, body = LinkObject, description = "the link; `url` is shown only here",
            headers(("Location" = String, description = "`/files/{id}/links/{link}`"))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: the body is not JSON"),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: a field not valid (`expires_in` beyond \
                `sharing.max_expiry_secs`, `max_downloads` below 1)"),
        NotFound, Authenticated,
    ))]
pub async fn create(
    id: web::Path<Uuid>,
    body: web::Bytes,
    pool: web::Data<PgPool>,
    sharing: web::Data<SharingSettings>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    // Nothing, or `null`, takes the defaults.
    let asked: NewLink = api::json_object(&body)?.unwrap_or_default();
    let (expires_at, max_downloads) = validate(&asked, &sharing)?;
    let (secret, hash) = links::new_secret().map_err(ApiError::internal)?;
    let link = links::create(&pool, owner.user_id, *id, &hash, expires_at, max_downloads)
        .await?
        .ok_or(ApiError::NotFound("file"))?;
    Ok(api::owned(&mut HttpResponse::Created())
        .insert_header((header::LOCATION, format!("/files/{}/links/{}", id, link.id)))
        .json(LinkObject::of(&link, Some(&secret))))
}

/// The link's expiry and limit, within the operator's bounds.
fn validate(
    asked: &NewLink,
    sharing: &SharingSettings,
) -> Result<(Option<OffsetDateTime>, Option<i32>), ApiError> {
    let mut errors = Vec::new();
    let expires_at = lifetimes::link_expiry(asked.expires_in.as_deref(), sharing)
        .map_err(|error| errors.push(error))
        .ok()
        .flatten();
    let max_downloads = match asked.max_downloads {
        None => None,
        Some(count) => match i32::try_from(count) {
            Ok(count) if count >= 1 => Some(count),
            _ => {
                errors.push(FieldError::new("max_downloads", "must be 1 or more"));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok((expires_at, max_downloads))
}

/// The file's links, oldest first (without their URLs, which only their creation showed).
#[utoipa::path(get, path = "/files/{id}/links", tag = "files", operation_id = "list_links",
    security(("token" = [])),
    params(("id" = Uuid, Path, description = "the file's id")),
    responses(
        (status = 200, body = Vec<LinkObject>, description = "the file's links"),
        NotFound, Authenticated,
    ))]
pub async fn list(
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let file = super::find(&pool, owner, *id).await?;
    let found = links::list(&pool, owner.user_id, file.id).await?;
    let objects: Vec<_> = found
        .iter()
        .map(|link| LinkObject::of(link, None))
        .collect();
    Ok(api::owned(&mut HttpResponse::Ok()).json(objects))
}

/// Revokes a link at once: its URL answers `404` from now on, on every instance.
#[utoipa::path(delete, path = "/files/{id}/links/{link}", tag = "files",
    operation_id = "revoke_link", security(("token" = [])),
    params(
        ("id" = Uuid, Path, description = "the file's id"),
        ("link" = Uuid, Path, description = "the link's id"),
    ),
    responses((status = 204, description = "revoked"), NotFound, Authenticated))]
pub async fn revoke(
    path: web::Path<(Uuid, Uuid)>,
    pool: web::Data<PgPool>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let (file, link) = path.into_inner();
    match links::delete(&pool, owner.user_id, file, link).await? {
        true => Ok(HttpResponse::NoContent().finish()),
        false => Err(ApiError::NotFound("link")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharing(max: u64, default: u64) -> SharingSettings {
        SharingSettings {
            max_expiry_secs: max,
            default_expiry_secs: default,
        }
    }

    fn asked(expires_in: Option<&str>, max_downloads: Option<i64>) -> NewLink {
        NewLink {
            expires_in: expires_in.map(str::to_owned),
            max_downloads,
        }
    }

    #[test]
    fn a_link_lives_within_the_operators_bound() {
        let bounded = sharing(30 * 86_400, 7 * 86_400);
        let (expires, _) = validate(&asked(None, None), &bounded).unwrap();
        let lives = expires.unwrap() - OffsetDateTime::now_utc();
        assert!((6..=7).contains(&lives.whole_days()), "{lives}");
        assert!(validate(&asked(Some("31d"), None), &bounded).is_err());
        assert!(validate(&asked(Some("0s"), None), &bounded).is_err());
        assert!(validate(&asked(Some("30d"), Some(0)), &bounded).is_err());
        assert!(validate(&asked(Some("30d"), Some(1 << 40)), &bounded).is_err());
        let (_, max) = validate(&asked(Some("1h"), Some(3)), &bounded).unwrap();
        assert_eq!(max, Some(3));
        // No bound and no default: until revoked; a bound and no default: the bound.
        let (expires, _) = validate(&asked(None, None), &sharing(0, 0)).unwrap();
        assert_eq!(expires, None);
    }
}
