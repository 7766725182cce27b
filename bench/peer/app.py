"""The FastAPI service of the tutorial intake was born from, kept as the benchmark's peer.

It is run by scripts/bench.sh with uvicorn, on loopback only. Like the tutorial it reads each
upload whole into memory (`await file.read()`) and does not store it. `durable.py` is the same
service storing what it receives.
"""
import asyncio

from fastapi import APIRouter, FastAPI, File, UploadFile

# What both peers serve besides the upload.
lessons = APIRouter()


@lessons.get("/ping")
async def ping():
    return {"message": "pong"}


@lessons.get("/slow")
async def slow(ms: int = 1000):
    await asyncio.sleep(ms / 1000)
    return {"status": "done", "waited_ms": ms}


async def charge():
    await asyncio.sleep(1.0)
    return {"status": "succeeded"}


async def send_confirmation():
    await asyncio.sleep(0.5)
    return {"status": "sent"}


@lessons.post("/checkout")
async def checkout(order: dict):
    payment, email = await asyncio.gather(charge(), send_confirmation())
    return {"status": "paid", "payment": payment, "email": email}


app = FastAPI()
app.include_router(lessons)


@app.post("/upload")
async def upload(file: UploadFile = File(...)):
    contents = await file.read()
    return {"filename": file.filename, "content_type": file.content_type, "size": len(contents)}
