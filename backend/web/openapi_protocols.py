"""The OpenAPI parts for the extra request forms, explanations, the v2 protocol and the docs index
(kept out of ``backend.web.openapi`` so each protocol's description lives next to the others')."""

from __future__ import annotations

from backend.model.occlusion import STRIDE, WINDOW
from backend.web.bodies import FLAGS

REF = "#/components/schemas/"

V2_ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
            "properties": {"error": {"type": "string"}}}


def raw_image_content() -> dict:
    """Non-JSON bodies accepted by predict and explain."""
    binary = {"type": "string", "format": "binary", "minLength": 1}
    return {
        "image/*": {"schema": binary},
        "application/octet-stream": {"schema": binary},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "description": "The first file part is the image, whatever its field name.",
            "properties": {"file": binary, "return_input": {"type": "string", "enum": list(FLAGS)},
                           "strict": {"type": "string", "enum": list(FLAGS)}}}},
    }


def schemas(model_names: list[str], verdict_fields: dict) -> dict:
    row = {"type": "array", "items": {"type": "number"}, "minItems": 28, "maxItems": 28}
    tensor = {"type": "object", "required": ["name", "datatype", "shape"],
              "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                             "shape": {"type": "array", "items": {"type": "integer"}}}}
    input_tensor = {**tensor, "properties": {
        **tensor["properties"], "datatype": {"enum": ["FP32", "BYTES"]},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 4},
        "data": {"type": "array"}, "parameters": {"type": "object"}}}
    return {
        "Explanation": {
            "type": "object",
            "required": ["model", "model_version", "label", "class_index", "confidence", "probabilities",
                         "in_distribution", "ood_score", "method", "window", "stride", "attributions", "overlay"],
            "properties": {
                "model": {"type": "string", "enum": model_names}, "model_version": {"type": "string"},
                **verdict_fields, "probabilities": {"type": "array", "items": {"type": "number"}},
                "method": {"const": "occlusion"}, "window": {"const": WINDOW}, "stride": {"const": STRIDE},
                "attributions": {"type": "array", "items": row, "minItems": 28, "maxItems": 28,
                                 "description": "Per input pixel: mean drop of the predicted class's "
                                                "probability when a patch covering it is blanked."},
                "overlay": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png",
                            "description": "224×224 PNG: the model input in grey, attributions in red."}},
            "additionalProperties": False},
        "Index": {"type": "object", "required": ["name", "version", "links"],
                  "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                 "models": {"type": "array", "items": {"type": "string"}},
                                 "links": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "V2Error": V2_ERROR,
        "V2ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"],
                             "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                            "extensions": {"type": "array", "items": {"type": "string"}}}},
        "V2ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"],
                            "properties": {"name": {"type": "string"}, "platform": {"type": "string"},
                                           "versions": {"type": "array", "items": {"type": "string"}},
                                           "inputs": {"type": "array", "items": tensor},
                                           "outputs": {"type": "array", "items": tensor}}},
        "V2InferRequest": {
            "type": "object", "required": ["inputs"],
            "description": "One input: FP32 [N,1,28,28] (normalised, (x-mean)/std from the model card) or "
                           "BYTES [N] (encoded image files; base64 strings in JSON). The binary tensor "
                           "extension (Inference-Header-Content-Length) is accepted too.",
            "properties": {"id": {"type": "string"},
                           "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": input_tensor},
                           "outputs": {"type": "array"}}},
        "V2InferResponse": {
            "type": "object", "required": ["model_name", "outputs"],
            "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                           "id": {"type": "string"},
                           "outputs": {"type": "array", "items": {
                               **tensor, "properties": {**tensor["properties"],
                                                        "data": {"type": "array",
                                                                 "items": {"type": ["number", "boolean"]}}}}}}},
    }


def paths(model_names: list[str], predict_errors: dict, common_errors: dict, strict_query: dict) -> dict:
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": model_names}}]
    any_name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]

    def v2(schema: str) -> dict:
        return {"description": "OK", "content": {"application/json": {"schema": {"$ref": REF + schema}}}}

    def v2_error(description: str) -> dict:
        return {"description": description, "content": {"application/json": {"schema": {"$ref": REF + "V2Error"}}}}

    empty = {"description": "OK (empty body)"}
    not_ready = {"description": "Not ready (empty body)"}
    v2_common = {"401": common_errors["401"], "500": common_errors["500"]}
    infer_errors = {"400": v2_error("Malformed request or tensor"), "404": v2_error("Unknown model or version"),
                    "413": v2_error("Body, batch or image over the limits"),
                    "422": v2_error("A BYTES element is not a supported image"),
                    "503": v2_error("Models still loading"), **v2_common}
    infer_body = {"required": True, "content": {
        "application/json": {"schema": {"$ref": REF + "V2InferRequest"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    version = [{"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "/v2/models/{name}/versions/{version}/infer": {"post": {
            "operationId": "v2InferVersion", "tags": ["v2"], "parameters": any_name + version,
            "summary": "OIP inference on one version (stable or a gated candidate)",
            "requestBody": infer_body, "responses": {"200": v2("V2InferResponse"), **infer_errors}}},
        "/": {"get": {"operationId": "index", "summary": "Name, version and links", "tags": ["operations"],
                      "responses": {"200": {"description": "OK", "content": {"application/json": {
                          "schema": {"$ref": REF + "Index"}}}}, **v2_common}}},
        "/docs": {"get": {"operationId": "docs", "summary": "Interactive API docs (Swagger UI, served locally)",
                          "tags": ["operations"],
                          "responses": {"200": {"description": "HTML page",
                                                "content": {"text/html": {"schema": {"type": "string"}}}},
                                        **v2_common}}},
        "/v1/models/{name}/explain": {"post": {
            "operationId": "explain", "tags": ["predict"], "parameters": [*name, strict_query],
            "summary": f"Occlusion sensitivity ({WINDOW}×{WINDOW} patches, stride {STRIDE}) of one image",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": REF + "SingleRequest"}}, **raw_image_content()}},
            "responses": {"200": {"description": "Attributions and overlay", "content": {"application/json": {
                "schema": {"$ref": REF + "Explanation"}}}}, **predict_errors}}},
        "/v2": {"get": {"operationId": "v2ServerMetadata", "tags": ["v2"], "summary": "OIP server metadata",
                        "responses": {"200": v2("V2ServerMetadata"), **v2_common}}},
        "/v2/health/live": {"get": {"operationId": "v2Live", "tags": ["v2"], "summary": "OIP liveness",
                                    "responses": {"200": empty, **v2_common}}},
        "/v2/health/ready": {"get": {"operationId": "v2Ready", "tags": ["v2"], "summary": "OIP readiness",
                                     "responses": {"200": empty, "503": not_ready, **v2_common}}},
        "/v2/models/{name}": {"get": {
            "operationId": "v2ModelMetadata", "tags": ["v2"], "summary": "OIP model metadata",
            "parameters": any_name,
            "responses": {"200": v2("V2ModelMetadata"), "404": v2_error("Unknown model"),
                          "503": v2_error("Models still loading"), **v2_common}}},
        "/v2/models/{name}/ready": {"get": {
            "operationId": "v2ModelReady", "tags": ["v2"], "summary": "OIP model readiness",
            "parameters": any_name,
            "responses": {"200": empty, "404": v2_error("Unknown model"), "503": not_ready, **v2_common}}},
        "/v2/models/{name}/infer": {"post": {
            "operationId": "v2Infer", "tags": ["v2"],
            "summary": "OIP inference → probabilities FP32 [N,10], ood_score FP32 [N], in_distribution BOOL [N]",
            "parameters": any_name,
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": REF + "V2InferRequest"}},
                "application/octet-stream": {"schema": {
                    "type": "string", "format": "binary", "minLength": 1,
                    "description": "One encoded image file (BYTES [1], as on /predict); with an "
                                   "Inference-Header-Content-Length header, the binary tensor extension: "
                                   "that many bytes of JSON inference request, then the tensor bytes."}},
                "image/*": {"schema": {"type": "string", "format": "binary", "minLength": 1}}}},
            "responses": {"200": v2("V2InferResponse"),
                          "400": v2_error("Malformed request or tensor"), "404": v2_error("Unknown model"),
                          "413": v2_error("Body, batch or image over the limits"),
                          "422": v2_error("A BYTES element is not a supported image"),
                          "503": v2_error("Models still loading"), **v2_common}}},
    }
