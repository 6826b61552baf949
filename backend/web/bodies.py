"""Request-body forms of the predict/explain routes → a list of images (raw bytes or base64 text).

Clients reach for what they know, so one route accepts:

* JSON ``{"base64": "..."}`` / ``{"instances": [...]}`` whatever the Content-Type says (curl ``-d``
  without ``-H`` sends ``application/x-www-form-urlencoded``);
* the assignment's literal, unquoted ``{"base64": iVBOR...}`` — a fallback for exactly that shape
  (one key, a bare base64 value), nothing looser;
* a raw image body (``image/*``, ``application/octet-stream``, or any Content-Type when the bytes start
  with a known image signature), as ``curl --data-binary @digit.png`` sends it;
* ``multipart/form-data`` (``curl -F file=@digit.png``): the first file part, any field name.

Structure errors are ``ApiError`` 400s that name the bad field; image errors come later from
``backend.model.decoding`` so every form shares the same limits and messages.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from flask import Request, request

from backend.contract import BATCH_TOO_LARGE, INVALID_JSON, INVALID_REQUEST
from backend.errors import ApiError

USAGE = ('send {"base64": "<base64-encoded image>"} as JSON, the image file itself '
         "(--data-binary @digit.png), or a multipart upload (-F file=@digit.png)")

# The literal form of the assignment: {"base64": <bare base64>} — standard or URL-safe alphabet,
# optional padding, line breaks from `base64` wrapping. Anything else stays a JSON error.
_BASE64_AND_SPACE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_- \t\n\r\x0b\x0c"
_KEY = b'"base64"'

# File signatures of the formats backend.model.decoding opens (a raw upload sent with a wrong Content-Type).
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


@dataclass(frozen=True)
class Body:
    images: list  # each item: bytes (an encoded image file) or str (base64 text)
    is_batch: bool
    return_input: bool
    strict: bool | None = None  # the request's "strict" field; None = the server's default


def read_body(max_batch: int) -> Body:
    """Parse the current request's body in whichever accepted form it came; raises ApiError."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        return _multipart()
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: werkzeug raises 413 here
    if mimetype.startswith("image/") or mimetype == "application/octet-stream" or _looks_like_image(raw):
        if not raw:
            raise ApiError(f"request body is empty; {USAGE}", code=INVALID_REQUEST)
        return Body([raw], False, False)
    return parse_json_body(raw, max_batch)


def parse_json_body(raw: bytes, max_batch: int) -> Body:
    try:
        body = load_json(raw, JsonShape.predict(max_batch))
    except JsonSyntaxError:
        literal = unquoted_base64(raw)
        if literal is None:
            raise
        return Body([literal], False, False)
    return _from_json(body, max_batch)


class JsonSyntaxError(ApiError):
    """The body is not JSON at all (as opposed to JSON with a value or a shape we refuse)."""

    code = INVALID_JSON


@dataclass(frozen=True)
class JsonShape:
    """How much JSON structure a route's valid bodies can have: ``containers`` counts ``{`` and ``[``
    (which also bounds the nesting), ``items`` counts ``,`` (array elements and object members)."""

    containers: int
    items: int
    usage: str

    @classmethod
    def predict(cls, max_batch: int) -> JsonShape:
        # At most max_batch small objects of base64 text (which contains no { [ ,).
        return cls(containers=8 * max_batch + 32, items=8 * max_batch + 32, usage=USAGE)


def load_json(raw: bytes, shape: JsonShape):
    """``json.loads`` for untrusted bodies, every failure an ``ApiError`` 400 ``invalid_json``.

    The structure is counted first (``bytes.count`` runs at C speed: ~1 ms for 10 MiB), because
    10 MiB of ``[],[],…`` parses into millions of Python objects (~340 MiB): a body with more
    containers or items than any valid request of the route is refused before it is parsed. What
    ``json.loads`` then does is linear in the body and bounded by those counts.
    """
    if not raw.strip():
        raise ApiError(f"request body is empty; {shape.usage}", code=INVALID_JSON)
    if raw.count(b"{") + raw.count(b"[") > shape.containers or raw.count(b",") > shape.items:
        raise ApiError(f"the JSON body is nested too deeply or has far more objects, arrays or items than a "
                       f"valid request can have (at most {shape.containers} objects and arrays, {shape.items} "
                       f"items); {shape.usage}", code=INVALID_JSON)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(f"body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                              f"{shape.usage}") from None
    except UnicodeDecodeError:
        raise ApiError("body is neither UTF-8 JSON nor a supported image; " + shape.usage,
                       code=INVALID_JSON) from None
    except RecursionError:
        raise ApiError("JSON is nested too deeply; " + shape.usage, code=INVALID_JSON) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits (int() refuses to parse it)
        raise ApiError(f"body has a value JSON parsing refused ({str(exc)[:120]}); {shape.usage}",
                       code=INVALID_JSON) from None


def unquoted_base64(raw: bytes) -> str | None:
    """The bare value of ``{"base64": <base64>}``, or None when ``raw`` is not exactly that shape.

    A fixed sequence of C-speed ``bytes`` operations, each linear in the body: no backtracking, so
    megabytes of whitespace cost what copying them costs (a regex here took 34 CPU-s for 4.5 KB).
    """
    s = raw.strip()
    if not (s.startswith(b"{") and s.endswith(b"}")):
        return None
    s = s[1:-1].strip()
    if not s.startswith(_KEY):
        return None
    s = s[len(_KEY):].lstrip()
    if not s.startswith(b":"):
        return None
    value = s[1:].strip()
    text = value.rstrip(b"=")
    if not text or text.translate(None, _BASE64_AND_SPACE):  # empty, or a byte outside the alphabet
        return None
    return value.decode("ascii")


def _looks_like_image(raw: bytes) -> bool:
    return raw.startswith(_IMAGE_MAGIC) or (raw[:4] == b"RIFF" and raw[8:12] == b"WEBP")


def _multipart() -> Body:
    files = request.files  # werkzeug streams parts to disk; MAX_CONTENT_LENGTH still applies (413)
    for storage in files.values():
        data = storage.read()
        if data:
            strict = request.form.get("strict")
            return Body([data], False, _flag(request.form.get("return_input", "false")),
                        None if strict is None else _flag(strict, "strict"))
    raise ApiError("multipart body has no (non-empty) file part; upload the image with -F file=@digit.png",
                   code=INVALID_REQUEST)


# The multipart form's text values of a flag such as return_input or strict (the OpenAPI document
# lists exactly these).
FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _flag(text: str, name: str = "return_input") -> bool:
    if text not in FLAGS:
        raise ApiError(f"'{name}' must be one of {', '.join(FLAGS)}; got {text[:20]!r}", code=INVALID_REQUEST)
    return FLAGS[text]


class InMemoryUploads(Request):
    """Multipart file parts kept in memory, not spooled to ``$TMPDIR`` a second time: the body is
    already bounded by ``VISION_MAX_BODY_BYTES`` and, when large, spooled once by Waitress inside
    the spool budget (``backend.protection.admission``)."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def type_name(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def _from_json(body, max_batch: int) -> Body:
    if not isinstance(body, dict):
        raise ApiError(f"body must be a JSON object, got {type_name(body)}; {USAGE}", code=INVALID_REQUEST)
    return_input = body.get("return_input", False)
    if not isinstance(return_input, bool):
        raise ApiError(f"'return_input' must be true or false, got {type_name(return_input)}",
                       code=INVALID_REQUEST)
    strict = body.get("strict")
    if "strict" in body and not isinstance(strict, bool):
        raise ApiError(f"'strict' must be true or false, got {type_name(strict)}", code=INVALID_REQUEST)
    if "instances" in body:
        if "base64" in body:
            raise ApiError("send either 'base64' (one image) or 'instances' (a batch), not both",
                           code=INVALID_REQUEST)
        instances = body["instances"]
        if not isinstance(instances, list):
            raise ApiError(f"'instances' must be an array of {{\"base64\": ...}} objects, got "
                           f"{type_name(instances)}", code=INVALID_REQUEST)
        if not instances:
            raise ApiError("'instances' is empty; send at least one image", code=INVALID_REQUEST)
        if len(instances) > max_batch:
            raise ApiError(f"'instances' has {len(instances)} images; the maximum per request is {max_batch} "
                           "(VISION_MAX_BATCH)", code=BATCH_TOO_LARGE)
        texts = []
        for i, item in enumerate(instances):
            if not isinstance(item, dict) or not isinstance(item.get("base64"), str):
                got = type_name(item.get("base64")) if isinstance(item, dict) else type_name(item)
                raise ApiError(f"instances[{i}] must be an object with a string 'base64' field (got {got})",
                               code=INVALID_REQUEST)
            texts.append(item["base64"])
        return Body(texts, True, return_input, strict)
    if "base64" not in body:
        raise ApiError(f"missing field 'base64'; {USAGE}", code=INVALID_REQUEST)
    text = body["base64"]
    if not isinstance(text, str):
        raise ApiError(f"'base64' must be a string, got {type_name(text)}; {USAGE}", code=INVALID_REQUEST)
    return Body([text], False, return_input, strict)
