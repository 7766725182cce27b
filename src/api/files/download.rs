//! `GET`/`HEAD /files/{id}/content`: the bytes, with validators and single byte ranges.

use std::time::SystemTime;

use actix_web::{
    HttpMessage, HttpRequest, HttpResponse,
    body::SizedStream,
    http::{
        Method,
        header::{self, ByteRangeSpec, EntityTag, HttpDate, IfNoneMatch, IfRange, Range},
    },
    web,
};
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    access::auth::Owner,
    api::openapi::responses::{Authenticated, NotFound},
    base::{error::ApiError, problem::Problem},
    catalog::record::{self, FileRecord},
    storage::{ByteStream, Storage},
};

/// A file's bytes, with its stored `Content-Type`, a strong `ETag` (its SHA-256),
/// `Last-Modified`, conditional requests and one byte range. Never rendered in intake's
/// origin: `Content-Disposition: attachment`, `nosniff`, a sandboxing CSP.
#[utoipa::path(method(get, head), path = "/files/{id}/content", tag = "files",
    security(("token" = [])),
    params(
        ("id" = Uuid, Path, description = "the file's id"),
        ("Range" = Option<String>, Header, description = "one range: `bytes=0-99`, `bytes=100-`, `bytes=-100`"),
        ("If-None-Match" = Option<String>, Header, description = "`304` when it names the ETag"),
        ("If-Range" = Option<String>, Header, description = "the range only if this ETag still matches"),
    ),
    responses(
        (status = 200, description = "the whole file", content_type = "*/*", body = Vec<u8>,
            headers(("ETag" = String), ("Accept-Ranges" = String), ("Content-Disposition" = String))),
        (status = 206, description = "the range asked for", content_type = "*/*", body = Vec<u8>,
            headers(("Content-Range" = String))),
        (status = 304, description = "unchanged since the ETag given"),
        (status = 416, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: the range lies beyond the file",
            headers(("Content-Range" = String, description = "`bytes */<size>`"))),
        NotFound, Authenticated,
    ))]
pub async fn content(
    req: HttpRequest,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    storage: web::Data<Storage>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let record = super::find(&pool, owner, *id).await?;
    serve(&req, &record, &pool, &storage, None).await
}

/// What a download that reaches the file's end runs before its last bytes go out.
pub type WholeSent = futures_util::future::BoxFuture<'static, ()>;

/// The answer to a download of `record`, as `GET`/`HEAD /files/{id}/content` gives it; `whole`
/// runs when a `GET`'s body reaches the file's last byte (a whole file, or the range that ends a
/// resumed download), before its last chunk is handed to the connection: a client that has the
/// whole body has been counted, and one cut off earlier has not.
pub async fn serve(
    req: &HttpRequest,
    record: &FileRecord,
    pool: &PgPool,
    storage: &Storage,
    whole: Option<WholeSent>,
) -> Result<HttpResponse, ApiError> {
    let etag = EntityTag::new_strong(record.sha256_hex());
    let last_modified = HttpDate::from(SystemTime::from(record.created_at));

    if not_modified(req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header(header::ETag(etag))
            .insert_header(header::LastModified(last_modified))
            .finish());
    }

    let size = record.size as u64;
    let range = match requested_range(req, &etag, last_modified) {
        None => None,
        Some(spec) => match spec.to_satisfiable_range(size) {
            Some(range) => Some(range),
            None => return Err(ApiError::RangeNotSatisfiable(size)),
        },
    };

    let (start, length) = match range {
        Some((first, last)) => (first, last - first + 1),
        None => (0, size),
    };
    // HEAD sends no body: the row says all there is to say, and a bucket is not asked for bytes.
    let bytes = if req.method() == Method::HEAD {
        futures_util::stream::empty().boxed()
    } else if record.inline {
        let Some(bytes) = record::read_inline(pool, record.id, start, length).await? else {
            return Err(ApiError::NotFound("file"));
        };
        futures_util::stream::once(async { Ok(bytes::Bytes::from(bytes)) }).boxed()
    } else {
        // A delete may have taken the object away since the row was read: gone, not broken.
        match storage.read(record.id, start, length).await {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ApiError::NotFound("file"));
            }
            other => other?,
        }
    };
    let bytes = match whole {
        Some(whole) if req.method() == Method::GET && start + length == size => {
            if length == 0 {
                whole.await;
                bytes
            } else {
                reaching_the_end(bytes, length, whole)
            }
        }
        _ => bytes,
    };
    let body = SizedStream::new(length, bytes);

    let mut builder = match range {
        Some((first, last)) => {
            let mut b = HttpResponse::PartialContent();
            b.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{size}"),
            ));
            b
        }
        None => HttpResponse::Ok(),
    };
    Ok(builder
        .content_type(record.content_type.as_str())
        .insert_header(header::ETag(etag))
        .insert_header(header::LastModified(last_modified))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_DISPOSITION, attachment(record)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Even if a browser were made to render the file, it gets no origin and no scripts.
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"))
        .body(body))
}

/// `bytes` (`length` of them), the chunk that brings the last held back until `whole` has run.
fn reaching_the_end(bytes: ByteStream, length: u64, whole: WholeSent) -> ByteStream {
    let state = (bytes, 0, Some(whole));
    futures_util::stream::unfold(state, move |(mut bytes, mut sent, mut whole)| async move {
        let chunk = bytes.next().await?;
        if let Ok(chunk) = &chunk {
            sent += chunk.len() as u64;
            if sent >= length
                && let Some(whole) = whole.take()
            {
                whole.await;
            }
        }
        Some((chunk, (bytes, sent, whole)))
    })
    .boxed()
}

/// `If-None-Match` uses the weak comparison (RFC 9110 §13.1.2).
fn not_modified(req: &HttpRequest, etag: &EntityTag) -> bool {
    match req.get_header::<IfNoneMatch>() {
        Some(IfNoneMatch::Any) => true,
        Some(IfNoneMatch::Items(tags)) => tags.iter().any(|tag| tag.weak_eq(etag)),
        None => false,
    }
}

/// The single byte range to serve, if the request asks for one that still applies. Several
/// ranges are answered with the whole file, which RFC 9110 allows.
fn requested_range(
    req: &HttpRequest,
    etag: &EntityTag,
    last_modified: HttpDate,
) -> Option<ByteRangeSpec> {
    // An If-Range that cannot be parsed cannot match: the whole file is sent (RFC 9110 §13.1.5).
    let range_applies = match req.get_header::<IfRange>() {
        Some(IfRange::EntityTag(tag)) => tag.strong_eq(etag),
        Some(IfRange::Date(date)) => date == last_modified,
        None => !req.headers().contains_key(header::IF_RANGE),
    };
    match req.get_header::<Range>() {
        Some(Range::Bytes(mut specs)) if range_applies && specs.len() == 1 => specs.pop(),
        _ => None,
    }
}

/// Everything but RFC 8187's `attr-char` is percent-encoded in `filename*`.
const NOT_ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Always an attachment, since the stored type may be one a browser would execute. The
/// quoted `filename` is an ASCII fallback without quotes, backslashes or semicolons; the exact
/// name travels in `filename*` (RFC 6266).
fn attachment(record: &FileRecord) -> String {
    let fallback: String = record
        .filename
        .chars()
        .map(|c| match c {
            ' ' => ' ',
            '"' | '\\' | '%' | ';' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let exact = utf8_percent_encode(&record.filename, NOT_ATTR_CHAR);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
}
