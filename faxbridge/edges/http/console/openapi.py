"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json (validated in the tests)."""

from __future__ import annotations

from typing import Any

from faxbridge import __version__
from faxbridge.model import JobState

_ERROR = {"description": "refused, in words", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JOB = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_BEFORE = {"name": "before", "in": "query", "required": False, "schema": {"type": "integer"},
           "description": "keyset pagination: only items with ids below this (next_before of the previous page)"}


def _job_action(summary: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [_JOB_ID],
        "responses": {"200": {"description": "the job now", **_JOB}, "403": _ERROR, "404": _ERROR, "409": _ERROR},
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "faxbridge API",
        "version": __version__,
        "description": "Send faxes through faxbridge and read what it received. Every request but this "
                       "description needs `Authorization: Bearer <token>` (`faxbridge api-token USER`); "
                       "the token acts with its console user's role (viewer < sender < approver < admin).",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/openapi.json": {"get": {"summary": "this description", "security": [],
                                         "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        "/api/v1/jobs": {
            "post": {
                "summary": "submit a fax job (role sender)",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string", "maxLength": 200},
                                "description": "the same key again answers with the job already made (200), never a second one"}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Submission"}},
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "documents": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "recipients": {"type": "array", "items": {"type": "string"}},
                        "reference": {"type": "string"}, "send_at": {"type": "string"},
                        "options": {"type": "array", "items": {"type": "string"}, "description": "KEY=VALUE"}},
                        "required": ["documents", "recipients"]}},
                }},
                "responses": {"201": {"description": "journaled; it is sent as soon as possible", **_JOB},
                              "200": {"description": "the job made earlier with this Idempotency-Key", **_JOB},
                              "400": _ERROR, "401": _ERROR, "403": _ERROR, "503": _ERROR},
            },
            "get": {
                "summary": "list jobs, newest first (a sender sees their own)",
                "parameters": [
                    {"name": "state", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": [s.value for s in JobState]}},
                    {"name": "source", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "q", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "a number or a file name"},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                    _BEFORE,
                ],
                "responses": {"200": {"description": "a page of jobs", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["jobs"], "properties": {
                        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                        "next_before": {"type": "integer"}}}}}}, "400": _ERROR, "401": _ERROR},
            },
        },
        "/api/v1/jobs/{job_id}": {"get": {
            "summary": "a job with its events (state changes and people's actions)",
            "parameters": [_JOB_ID],
            "responses": {"200": {"description": "the job", **_JOB}, "401": _ERROR, "404": _ERROR},
        }},
        "/api/v1/jobs/{job_id}/cancel": {"post": _job_action("cancel a job (CancelJob at FAX.de once it has it)")},
        "/api/v1/jobs/{job_id}/approve": {"post": _job_action("approve a held job (role approver)")},
        "/api/v1/jobs/{job_id}/reject": {"post": _job_action(
            "reject a held job with a reason (role approver)",
            {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}}}}},
        )},
        "/api/v1/inbound": {"get": {
            "summary": "received faxes, newest first",
            "parameters": [_BEFORE],
            "responses": {"200": {"description": "a page of faxes", "content": {"application/json": {"schema": {
                "type": "object", "required": ["faxes"], "properties": {
                    "faxes": {"type": "array", "items": {"$ref": "#/components/schemas/Fax"}},
                    "next_before": {"type": "integer"}}}}}}, "401": _ERROR},
        }},
        "/api/v1/inbound/{fax_id}/fax.{kind}": {"get": {
            "summary": "a received fax as TIFF (as FAX.de sent it) or PDF",
            "parameters": [{"name": "fax_id", "in": "path", "required": True, "schema": {"type": "integer"}},
                           {"name": "kind", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["tiff", "pdf"]}}],
            "responses": {"200": {"description": "the fax", "content": {
                "image/tiff": {"schema": {"type": "string", "format": "binary"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                "401": _ERROR, "404": {"description": "no such fax"}},
        }},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Submission": {"type": "object", "required": ["recipients", "documents"], "properties": {
                "recipients": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "documents": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                    "type": "object", "required": ["filename", "content_base64"], "properties": {
                        "filename": {"type": "string"}, "content_base64": {"type": "string"}}}},
                "reference": {"type": "string"},
                "send_at": {"type": "string", "description": "ISO 8601; without a zone: the daemon's local time"},
                "options": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "Job": {"type": "object", "required": ["id", "state"], "properties": {
                "id": {"type": "integer"},
                "state": {"type": "string", "enum": [s.value for s in JobState]},
                "type": {"type": "string"},
                "recipients": {"type": "array", "items": {"type": "string"}},
                "documents": {"type": "array", "items": {"type": "string"}},
                "source": {"type": "string"},
                "user": {"type": ["string", "null"]},
                "faxde_job_id": {"type": ["integer", "null"]},
                "pages": {"type": ["integer", "null"]},
                "send_result": {"type": "string"},
                "error": {"type": "string"},
                "created": {"type": ["string", "null"]},
                "finished": {"type": ["string", "null"]},
                "events": {"type": "array", "items": {"type": "object", "properties": {
                    "at": {"type": "string"}, "what": {"type": "string"}, "detail": {"type": "string"},
                    "user": {"type": "string"}}}}}},
            "Fax": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "integer"}, "from": {"type": "string"}, "station_id": {"type": "string"},
                "to": {"type": "string"}, "received": {"type": ["string", "null"]}, "pages": {"type": "integer"},
                "tiff": {"type": "string"}, "pdf": {"type": "string"}}},
        },
    },
}
