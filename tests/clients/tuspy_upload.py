"""Drives a tus upload with tuspy, in two steps, as a client whose transfer is interrupted:

    start  ENDPOINT FILE CHUNK_SIZE [TOKEN]  creates the upload, sends its first chunk, stops,
                                             and prints the upload's URL
    resume URL FILE CHUNK_SIZE [TOKEN]       asks the server how far the upload is and sends
                                             the rest; prints the upload's URL
    whole  ENDPOINT FILE CHUNK_SIZE [TOKEN]  uploads the whole file; prints the upload's URL

TUS_UPLOAD_LINK: instead of a token, an upload link's secret, sent as `Upload-Link`.
TUS_EXPIRES_IN: the file's lifetime, sent as `expires_in` metadata.
"""

import os
import sys

from tusclient import client

step, where, path, chunk_size, *token = sys.argv[1:]
chunk_size = int(chunk_size)
headers = {"Authorization": f"Bearer {token[0]}"} if token and token[0] else {}
if os.environ.get("TUS_UPLOAD_LINK"):
    headers = {"Upload-Link": os.environ["TUS_UPLOAD_LINK"]}
metadata = {"filename": "tuspy.bin"}
if os.environ.get("TUS_EXPIRES_IN"):
    metadata["expires_in"] = os.environ["TUS_EXPIRES_IN"]

if step == "whole":
    uploader = client.TusClient(where, headers=headers).uploader(
        path, chunk_size=chunk_size, metadata=metadata
    )
    uploader.upload()
elif step == "start":
    uploader = client.TusClient(where, headers=headers).uploader(
        path, chunk_size=chunk_size, metadata=metadata
    )
    uploader.upload(stop_at=chunk_size)
else:
    uploader = client.TusClient(where, headers=headers).uploader(
        path, url=where, chunk_size=chunk_size
    )
    uploader.upload()
print(uploader.url)
