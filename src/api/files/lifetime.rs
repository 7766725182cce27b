//! `PATCH /files/{id}`: when a file goes by itself. Past its `expires_at` a file is gone at
//! once for every reader, and the sweep deletes it as `DELETE` would.

use actix_web::{HttpResponse, web};
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    access::auth::Owner,
    api::{
        self, lifetimes,
        openapi::responses::{Authenticated, NotFound},
    },
    base::{error::ApiError, error_code::FieldError, problem::Problem},
    catalog::record::{self, FileObject},
    ingest::Ingest,
};

/// What a file's lifetime is to become.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileChange {
    /// From now: 1 to 4 digits and `s`, `m`, `h`, `d` or `w` (`7d`), at most
    /// `upload.max_lifetime_secs`; `null`: until deleted (only without that bound). Required.
    #[schema(required = true, value_type = Option<String>, example = "7d",
        pattern = r"^[1-9][0-9]{0,3}[smhdw]$")]
    expires_in: Value,
}

/// Gives a file a lifetime, or takes it away.
#[utoipa::path(patch, path = "/files/{id}", tag = "files", operation_id = "update_file",
    security(("token" = [])),
    params(("id" = Uuid, Path, description = "the file's id")),
    request_body(content = FileChange),
    responses(
        (status = 200, body = FileObject, description = "the file, with its `expires_at`"),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: the body is not JSON"),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: `expires_in` missing, not valid, beyond \
                `upload.max_lifetime_secs`, or `null` under that bound"),
        NotFound, Authenticated,
    ))]
pub async fn update(
    id: web::Path<Uuid>,
    body: web::Bytes,
    pool: web::Data<PgPool>,
    ingest: web::Data<Ingest>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let bound = ingest.limits.settings.max_lifetime_secs;
    let expires_at = parse(&body, bound)?;
    let file = record::set_expiry(&pool, owner.user_id, *id, expires_at)
        .await?
        .ok_or(ApiError::NotFound("file"))?;
    Ok(api::owned(&mut HttpResponse::Ok()).json(file.to_object()))
}

/// `{"expires_in": "7d"}` or `{"expires_in": null}`, within `bound` seconds (0: none).
fn parse(body: &[u8], bound: u64) -> Result<Option<OffsetDateTime>, ApiError> {
    let invalid = |field: String, message: String| {
        ApiError::Validation(vec![FieldError::new(field, message)])
    };
    let change: FileChange = api::json_object(body)?
        .ok_or_else(|| invalid(".".into(), "must be a JSON object".into()))?;
    let field = || "expires_in".to_owned();
    let lifetime = match change.expires_in {
        Value::Null if bound > 0 => {
            let why = format!("must be a lifetime: files live at most {bound} s here");
            return Err(invalid(field(), why));
        }
        Value::Null => return Ok(None),
        Value::String(text) => lifetimes::within(&text, bound, lifetimes::FILE_BOUND)
            .map_err(|why| invalid(field(), why))?,
        _ => return Err(invalid(field(), "must be a string or null".into())),
    };
    Ok(Some(OffsetDateTime::now_utc() + lifetime))
}
