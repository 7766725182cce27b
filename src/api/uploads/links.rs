//! Upload links: made by a user with a token (`POST /upload-links`), listed and revoked by
//! them; through one, anyone holding its URL uploads files to its creator without a token:
//! multipart at the URL (`POST /send/{secret}`), or tus at `/tus/` with the secret in the
//! `Upload-Link` header. A link's URL carries its secret, which only its creation's answer
//! shows: the database keeps the secret's hash.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Expect, commit, receive};
use crate::{
    access::auth::Owner,
    api::{
        self, lifetimes,
        openapi::responses::{Authenticated, NotFound, UploadRefused},
    },
    base::{
        configuration::SharingSettings, error::ApiError, error_code::FieldError, problem::Problem,
    },
    catalog::{
        links,
        upload_links::{self, Limits, UploadLink},
    },
    ingest::{Ingest, upload_link},
};

/// Types a link may name, at most.
const MOST_TYPES: usize = 32;

/// A media type (`application/pdf`) or `type/*`, as `media_range` reads it.
const MEDIA_RANGE: &str = r"^[A-Za-z0-9!#$&^_.+-]{1,100}/([A-Za-z0-9!#$&^_.+-]{1,100}|\*)$";

/// `allowed_content_types` as the document describes it.
fn media_ranges() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let range = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(MEDIA_RANGE));
    ArrayBuilder::new()
        .schema_type(
            [Type::Array, Type::Null]
                .into_iter()
                .collect::<utoipa::openapi::schema::SchemaType>(),
        )
        .items(range)
        .max_items(Some(MOST_TYPES))
        .description(Some(
            "Media types (`application/pdf`) or `type/*` (`image/*`), within the server's \
             `upload.allowed_content_types`; absent, `null` or empty: whatever the server allows.",
        ))
        .examples([serde_json::json!(["image/*", "application/pdf"])])
        .build()
}

/// What a new upload link is to allow.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUploadLink {
    /// How long the link lives: 1 to 4 digits and `s`, `m`, `h`, `d` or `w` (`7d`), at most
    /// `sharing.max_expiry_secs`. Absent or `null`: `sharing.default_expiry_secs`.
    #[schema(example = "7d", pattern = r"^[1-9][0-9]{0,3}[smhdw]$")]
    expires_in: Option<String>,
    /// Files the link takes in all; absent or `null`: no limit.
    #[serde(default, deserialize_with = "crate::api::whole_number")]
    #[schema(minimum = 1, maximum = 2147483647)]
    max_files: Option<i64>,
    /// The largest file it takes, at most `upload.max_file_bytes`; absent or `null`: that.
    #[serde(default, deserialize_with = "crate::api::whole_number")]
    #[schema(minimum = 1)]
    max_file_bytes: Option<i64>,
    #[schema(schema_with = media_ranges)]
    allowed_content_types: Option<Vec<String>>,
}

/// An upload link. `url` (which carries the secret) is in its creation's answer only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "019aeb2c-7d1e-7f3a-9c4b-2e5f8a1d3c6b",
    "url": "/send/q0fW2Xv3o6tQ1hL9yB8mZr4KcJ5nUe7aPgSdTiHxVwY",
    "created_at": "2026-12-04T10:00:00Z",
    "expires_at": "2026-12-11T10:00:00Z",
    "max_files": 10,
    "max_file_bytes": 104857600,
    "allowed_content_types": ["image/*", "application/pdf"],
    "files": 0
}))]
pub struct UploadLinkObject {
    id: Uuid,
    /// Where anyone uploads without a token (relative to this server): `POST` a multipart form
    /// there, or open it in a browser; tus clients send its secret as `Upload-Link`.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// `null`: until revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    max_files: Option<i32>,
    max_file_bytes: Option<i64>,
    allowed_content_types: Vec<String>,
    /// Files received through it so far.
    files: i32,
}

impl UploadLinkObject {
    fn of(link: &UploadLink, secret: Option<&str>) -> Self {
        Self {
            id: link.id,
            url: secret.map(|secret| format!("/send/{secret}")),
            created_at: link.created_at,
            expires_at: link.expires_at,
            max_files: link.max_files,
            max_file_bytes: link.max_file_bytes,
            allowed_content_types: link.allowed_content_types.clone(),
            files: link.files,
        }
    }
}

/// A link through which anyone holding its URL uploads files to the caller, within its limits
/// and the caller's quota, until it expires, has taken `max_files`, or is revoked.
#[utoipa::path(post, path = "/upload-links", tag = "files", operation_id = "create_upload_link",
    security(("token" = [])),
    request_body(content = Option<NewUploadLink>, description = "an empty body takes the defaults"),
    responses(
        (status = 201, body = UploadLinkObject, description = "the link; `url` is shown only here",
            headers(("Location" = String, description = "`/upload-links/{id}`"))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: the body is not JSON"),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: a field not valid (`expires_in` beyond \
                `sharing.max_expiry_secs`, `max_files` below 1, `max_file_bytes` beyond \
                `upload.max_file_bytes`, a type that is not a media type or not allowed here)"),
        Authenticated,
    ))]
pub async fn create(
    body: web::Bytes,
    pool: web::Data<PgPool>,
    sharing: web::Data<SharingSettings>,
    ingest: web::Data<Ingest>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let asked: NewUploadLink = api::json_object(&body)?.unwrap_or_default();
    let limits = validate(asked, &sharing, &ingest)?;
    let (secret, hash) = links::new_secret().map_err(ApiError::internal)?;
    let link = upload_links::create(&pool, owner.user_id, &hash, &limits).await?;
    Ok(api::owned(&mut HttpResponse::Created())
        .insert_header((header::LOCATION, format!("/upload-links/{}", link.id)))
        .json(UploadLinkObject::of(&link, Some(&secret))))
}

/// The link's limits, within the operator's bounds.
fn validate(
    asked: NewUploadLink,
    sharing: &SharingSettings,
    ingest: &Ingest,
) -> Result<Limits, ApiError> {
    let mut errors = Vec::new();
    let expires_at = lifetimes::link_expiry(asked.expires_in.as_deref(), sharing)
        .map_err(|error| errors.push(error))
        .ok()
        .flatten();
    let max_files = asked
        .max_files
        .and_then(|count| match i32::try_from(count) {
            Ok(count) if count >= 1 => Some(count),
            _ => {
                errors.push(FieldError::new("max_files", "must be 1 or more"));
                None
            }
        });
    let server_max = ingest.limits.settings.max_file_bytes;
    let max_file_bytes = asked.max_file_bytes.and_then(|bytes| {
        if bytes >= 1 && bytes as u64 <= server_max {
            return Some(bytes);
        }
        let why = format!("must be 1 to {server_max} (upload.max_file_bytes)");
        errors.push(FieldError::new("max_file_bytes", why));
        None
    });
    let types = asked.allowed_content_types.unwrap_or_default();
    if types.len() > MOST_TYPES {
        let why = format!("may name at most {MOST_TYPES} types");
        errors.push(FieldError::new("allowed_content_types", why));
    }
    for (i, entry) in types.iter().enumerate() {
        if let Err(why) = media_range(entry, ingest) {
            errors.push(FieldError::new(format!("allowed_content_types[{i}]"), why));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(Limits {
        expires_at,
        max_files,
        max_file_bytes,
        allowed_content_types: types.iter().map(|t| t.to_ascii_lowercase()).collect(),
    })
}

/// Whether `entry` is a media type or `type/*` the server itself allows (a wildcard, if the
/// server allows some type under it, is checked file by file).
fn media_range(entry: &str, ingest: &Ingest) -> Result<(), String> {
    let (top, sub) = entry
        .split_once('/')
        .ok_or("is not a media type such as `application/pdf` or `image/*`")?;
    let token = |part: &str| {
        !part.is_empty()
            && part.len() <= 100
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    if !token(top) || !(sub == "*" || token(sub)) {
        return Err("is not a media type such as `application/pdf` or `image/*`".into());
    }
    if sub != "*" && ingest.limits.allow.check(entry).is_err() {
        return Err("is not allowed here (upload.allowed_content_types)".into());
    }
    Ok(())
}

/// The caller's upload links, oldest first (without their URLs).
#[utoipa::path(get, path = "/upload-links", tag = "files", operation_id = "list_upload_links",
    security(("token" = [])),
    responses(
        (status = 200, body = Vec<UploadLinkObject>, description = "the caller's upload links"),
        Authenticated,
    ))]
pub async fn list(pool: web::Data<PgPool>, owner: Owner) -> Result<HttpResponse, ApiError> {
    let found = upload_links::list(&pool, owner.user_id).await?;
    let objects: Vec<_> = found
        .iter()
        .map(|link| UploadLinkObject::of(link, None))
        .collect();
    Ok(api::owned(&mut HttpResponse::Ok()).json(objects))
}

/// Revokes an upload link at once: its URL answers `404` from now on, on every instance, and
/// its unfinished resumable uploads can no longer be continued. The files that came through it
/// stay.
#[utoipa::path(delete, path = "/upload-links/{id}", tag = "files",
    operation_id = "revoke_upload_link", security(("token" = [])),
    params(("id" = Uuid, Path, description = "the link's id")),
    responses((status = 204, description = "revoked"), NotFound, Authenticated))]
pub async fn revoke(
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    match upload_links::delete(&pool, owner.user_id, *id).await? {
        true => Ok(HttpResponse::NoContent().finish()),
        false => Err(ApiError::NotFound("upload link")),
    }
}

/// What an upload link takes, for whoever holds its URL.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LinkAllows {
    /// `null`: until revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    /// Files it still takes; `null`: no limit.
    files_left: Option<i32>,
    /// The largest file it takes (its own limit, or the server's).
    max_file_bytes: u64,
    /// Empty: whatever the server allows.
    allowed_content_types: Vec<String>,
}

/// What an upload link takes (`Accept: application/json`; a browser gets the upload page).
#[utoipa::path(get, path = "/send/{secret}", tag = "files", operation_id = "upload_link_limits",
    params(("secret" = String, Path, description = "the secret of the link's URL")),
    responses(
        (status = 200, description = "what the link takes; a browser (no `Accept: \
            application/json`) gets the upload page instead",
            content((LinkAllows = "application/json"), (String = "text/html"))),
        (status = 410, body = Problem, content_type = "application/problem+json",
            description = "`link_expired`"),
        (status = 429, body = Problem, content_type = "application/problem+json",
            description = "`rate_limited`: too many requests from this address"),
        NotFound,
    ))]
pub async fn limits(
    ingest: web::Data<Ingest>,
    // A link refused (unknown, revoked, expired) fails here, as the `Owner` it would act for.
    _owner: Owner,
    link: web::ReqData<UploadLink>,
) -> Result<HttpResponse, ApiError> {
    let allows = LinkAllows {
        expires_at: link.expires_at,
        files_left: link.max_files.map(|max| (max - link.files).max(0)),
        max_file_bytes: upload_link::max_file_bytes(&ingest.limits, Some(&link)),
        allowed_content_types: link.allowed_content_types.clone(),
    };
    Ok(api::owned(&mut HttpResponse::Ok()).json(allows))
}

/// Upload files through an upload link, all or none, without a token.
///
/// Every part that names a file is stored for the link's creator, within the link's limits and
/// the creator's quota. An `expires_in` field gives them a lifetime.
#[utoipa::path(post, path = "/send/{secret}", tag = "files", operation_id = "upload_through_link",
    params(("secret" = String, Path, description = "the secret of the link's URL")),
    request_body(content = super::BatchForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = super::Batch, description = "all stored"),
        (status = 410, body = Problem, content_type = "application/problem+json",
            description = "`link_expired`, or `link_used_up`: the link has taken its `max_files`"),
        (status = 429, body = Problem, content_type = "application/problem+json",
            description = "`rate_limited` (this address), or `too_many_uploads`"),
        UploadRefused, NotFound,
    ))]
pub async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
    owner: Owner,
    link: web::ReqData<UploadLink>,
) -> Result<HttpResponse, ApiError> {
    upload_link::has_room(&link)?;
    let received = receive(&req, payload, &ingest, owner, Expect::Many, Some(&link)).await?;
    let stored = commit(&ingest, owner, received).await?;
    Ok(super::batch(&stored))
}
