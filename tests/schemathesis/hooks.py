"""Schemathesis hooks: what intake's document cannot say in OpenAPI."""

import re
import uuid

import schemathesis
from hypothesis import strategies as st

# A tus PATCH (and a creation-with-upload POST) sends the file's next bytes as they are.
schemathesis.openapi.media_type(
    "application/offset+octet-stream", st.binary(max_size=4096)
)
# So do a creation and a PATCH of the IETF draft's resumable uploads.
for media_type in ["application/partial-upload", "application/octet-stream"]:
    schemathesis.openapi.media_type(media_type, st.binary(max_size=4096))

VALID_KEY = re.compile(r"[!-~]{1,255}")
# What schemathesis's form encoder writes unescaped into a part's quoted `name`.
UNENCODABLE_NAME = re.compile(r'["\\\x00-\x1f\x7f-\x9f]')


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # Only valid requests are adjusted: a request meant to be wrong stays as generated.
    if case.meta is None or case.meta.generation.mode != "positive":
        return
    headers = case.headers or {}
    # An Idempotency-Key names one order: the same key with another body is refused (422) by
    # design, so every generated order gets a key of its own.
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.fullmatch(key):
        headers["Idempotency-Key"] = str(uuid.uuid4())
    # tus: a creation-with-upload brings at most `Upload-Length` bytes (413 beyond).
    length = headers.get("Upload-Length")
    if case.path == "/tus/" and isinstance(case.body, bytes) and str(length).isdigit():
        case.body = case.body[: int(length)]
    # The IETF draft: a body that ends the upload (`Upload-Complete: ?1`) is its length, and
    # one that does not goes no further than it.
    if case.path == "/resumable/" and isinstance(case.body, bytes) and str(length).isdigit():
        if headers.get("Upload-Complete") == "?1":
            headers["Upload-Length"] = str(len(case.body))
        else:
            case.body = case.body[: int(length)]
    # Extra form fields are ignored by intake, whatever their names; but a name with a quote, a
    # backslash or a control character would reach it as a malformed part (400).
    if case.media_type == "multipart/form-data" and isinstance(case.body, dict):
        for name in [n for n in case.body if UNENCODABLE_NAME.search(n)]:
            del case.body[name]
