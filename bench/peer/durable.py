"""The tutorial's service as it looks in production: an upload is streamed to a file (SHA-256
and size computed on the way, no whole copy in memory), the file is fsynced with its
directory, and a metadata row is inserted in Postgres (asyncpg) before the answer. The same
guarantee as intake's `201`: once answered, file and row survive a crash.

Settings from the environment: PEER_STORAGE (a directory), PEER_DATABASE (a Postgres URL whose
database has the `peer_files` table that scripts/bench.sh creates).
"""
import asyncio
import contextlib
import hashlib
import os
import uuid

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header

from app import lessons

STORAGE = os.environ["PEER_STORAGE"]


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    os.makedirs(STORAGE, exist_ok=True)
    app.state.pool = await asyncpg.create_pool(os.environ["PEER_DATABASE"], min_size=4, max_size=16)
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)
app.include_router(lessons)


def sync(fd: int, directory: str) -> None:
    os.fsync(fd)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@app.post("/upload", status_code=201)
async def upload(request: Request):
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise HTTPException(415, "multipart/form-data expected")
    file_id = uuid.uuid4()
    path = os.path.join(STORAGE, str(file_id))
    out = open(path, "wb")
    hasher = hashlib.sha256()
    state = {"size": 0, "name": None, "in_file": False, "done": False, "header": b""}

    def on_part_begin():
        state["in_file"] = False
        state["header"] = b""

    def on_header_value(data, start, end):
        state["header"] += data[start:end]

    def on_headers_finished():
        # One file part per request: the first part with a filename.
        state["in_file"] = b"filename=" in state["header"] and not state["done"]

    def on_part_data(data, start, end):
        if state["in_file"]:
            chunk = data[start:end]
            hasher.update(chunk)
            out.write(chunk)
            state["size"] += len(chunk)

    def on_part_end():
        if state["in_file"]:
            state["done"] = True

    parser = MultipartParser(
        options[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_header_value": on_header_value,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if not state["done"]:
            raise HTTPException(400, "no file part")
        out.flush()
        await asyncio.to_thread(sync, out.fileno(), STORAGE)
        out.close()
        digest = hasher.hexdigest()
        await request.app.state.pool.execute(
            "INSERT INTO peer_files (id, size, sha256) VALUES ($1, $2, $3)",
            file_id,
            state["size"],
            digest,
        )
    except BaseException:
        out.close()
        os.unlink(path)
        raise
    return {"id": str(file_id), "size": state["size"], "sha256": digest}
