//! `GET /me`: who the caller is and how much of their quota they use.

use actix_web::{HttpResponse, middleware::from_fn, web};
use serde::Serialize;
use sqlx::PgPool;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    access::{
        auth::{self, Owner},
        quota::Quota,
    },
    api::{
        self,
        openapi::{Documented, responses::Authenticated},
    },
    base::error::ApiError,
};

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/me",
            web::resource("/me")
                .route(web::get().to(me))
                .wrap(from_fn(auth::identify)),
        )
        .with(__path_me),
    );
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Account {
    name: String,
    /// The sizes of the caller's stored files.
    used_bytes: i64,
    /// `auth.default_quota_bytes`; `null` without a quota.
    quota_bytes: Option<u64>,
}

/// The caller's account: name, bytes stored, quota.
#[utoipa::path(get, path = "/me", tag = "files", security(("token" = [])),
    responses((status = 200, body = Account, description = "the caller's account"), Authenticated))]
async fn me(
    pool: web::Data<PgPool>,
    quota: web::Data<Quota>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    // Usage changes not yet applied to the user's row (a second at most) count too.
    let account = sqlx::query!(
        r#"
        SELECT name, used_bytes + coalesce(
            (SELECT sum(used_delta) FROM usage_changes WHERE user_id = users.id), 0
        )::bigint AS "used_bytes!"
        FROM users WHERE id = $1
        "#,
        owner.user_id
    )
    .fetch_one(pool.get_ref())
    .await?;
    Ok(api::owned(&mut HttpResponse::Ok()).json(Account {
        name: account.name,
        used_bytes: account.used_bytes,
        quota_bytes: quota.limit(),
    }))
}
