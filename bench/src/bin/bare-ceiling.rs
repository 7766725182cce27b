//! The machine's ceilings for a server, built by the benchmark: actix-web with nothing but a
//! `GET /ping` that answers like intake's (the ceiling for a request on this framework), and a
//! `POST /upload` sink that takes the raw body (no multipart), hashes it with SHA-256 and writes
//! it to a file that it `fdatasync`s before answering (no database): the ceiling for a durable,
//! hashed upload. Usage: `bare-ceiling ADDRESS DIR [--sync-dir] [--multipart]`.
//!
//! A file's name survives a crash only once its directory is synced too; the ceiling leaves that
//! out. `--sync-dir` adds it (an `fsync` of DIR after each file's `fdatasync`): the ceiling for an
//! upload as durable as intake's, but for the database row. `--multipart` takes the body as
//! intake does, `multipart/form-data` parsed by actix-multipart, and stores its parts' bytes:
//! what parsing costs on top of the sink (docs/targets.md measures both).

use std::{
    fs::File,
    io::{self, Write},
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use actix_multipart::Multipart;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Where the files go, whether their directory is synced after each, and whether bodies are
/// `multipart/form-data`.
struct Sink {
    dir: PathBuf,
    sync_dir: bool,
    multipart: bool,
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "message": "pong" }))
}

/// The body's chunks go to one blocking thread that hashes and writes them in turn, so that no
/// CPU or disk work runs on the event loop; a few chunks in flight let receiving overlap it.
async fn upload(
    sink: web::Data<Sink>,
    request: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let sink = sink.into_inner();
    let multipart = sink.multipart;
    let path = sink
        .dir
        .join(NEXT.fetch_add(1, Ordering::Relaxed).to_string());
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Bytes>(16);
    let writer = tokio::task::spawn_blocking(move || -> io::Result<(u64, String)> {
        let mut file = File::create(path)?;
        let mut hasher = Sha256::new();
        let mut size = 0;
        while let Some(chunk) = received.blocking_recv() {
            hasher.update(&chunk);
            file.write_all(&chunk)?;
            size += chunk.len() as u64;
        }
        file.sync_data()?;
        if sink.sync_dir {
            File::open(&sink.dir)?.sync_all()?;
        }
        Ok((size, hex::encode(hasher.finalize())))
    });
    if multipart {
        let mut form = Multipart::new(request.headers(), body);
        while let Some(part) = form.next().await {
            forward(part?, &chunks).await?;
        }
    } else {
        forward(body, &chunks).await?;
    }
    drop(chunks);
    let (size, sha256) = writer
        .await
        .map_err(actix_web::error::ErrorInternalServerError)??;
    Ok(HttpResponse::Created().json(serde_json::json!({ "size": size, "sha256": sha256 })))
}

/// Hands the stream's chunks to the writer, until it stops taking them.
async fn forward<E: Into<actix_web::Error>>(
    mut stream: impl Stream<Item = Result<Bytes, E>> + Unpin,
    chunks: &tokio::sync::mpsc::Sender<Bytes>,
) -> actix_web::Result<()> {
    while let Some(chunk) = stream.next().await {
        if chunks.send(chunk.map_err(Into::into)?).await.is_err() {
            break;
        }
    }
    Ok(())
}

#[actix_web::main]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(dir)) = (args.next(), args.next()) else {
        return Err(io::Error::other(
            "usage: bare-ceiling ADDRESS DIR [--sync-dir] [--multipart]",
        ));
    };
    let (mut sync_dir, mut multipart) = (false, false);
    for option in args {
        match option.as_str() {
            "--sync-dir" => sync_dir = true,
            "--multipart" => multipart = true,
            other => return Err(io::Error::other(format!("unknown option {other}"))),
        }
    }
    std::fs::create_dir_all(&dir)?;
    let sink = web::Data::new(Sink {
        dir: PathBuf::from(dir),
        sync_dir,
        multipart,
    });
    HttpServer::new(move || {
        App::new()
            .app_data(sink.clone())
            .app_data(web::PayloadConfig::new(usize::MAX))
            .route("/ping", web::get().to(ping))
            .route("/upload", web::post().to(upload))
    })
    .bind(address)?
    .run()
    .await
}
