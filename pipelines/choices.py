"""Closed sets of values that settings, pipelines and faces share, each defined once as a ``Literal``."""

from __future__ import annotations

from typing import Literal, get_args

from ingest.ocr import OCR_MODES as _OCR_MODES
from ingest.ocr import OcrMode as _OcrMode

Mode = Literal["hybrid", "dense", "keyword"]
"""How search orders passages: meaning and words together, meaning only, or words only."""
MODES: tuple[Mode, ...] = get_args(Mode)

Precision = Literal["auto", "float32", "bfloat16", "int8", "float16"]
"""What passages are computed in; ``auto`` picks the fastest path here that reproduces float32 (pipelines/model/precision.py)."""
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

QueryPrecision = Literal["auto", "float32", "bfloat16", "int8", "float16"]
"""What questions are computed in; ``auto`` picks int8 where it reproduces float32."""
QUERY_PRECISIONS: tuple[QueryPrecision, ...] = get_args(QueryPrecision)

Auth = Literal["none", "ldap", "oidc"]
"""How people sign in to the page: not at all (this machine only), against an LDAP directory, or OpenID
Connect (accepted as a value, not available yet: the page says so and stops)."""
AUTHS: tuple[Auth, ...] = get_args(Auth)

# When scanned pages are read by OCR (defined where the readers are, which cannot import pipelines)
OcrMode = _OcrMode
OCR_MODES = _OCR_MODES
