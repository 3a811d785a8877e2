"""Administration pages (organisation, dictionary, users, roles, security policy)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
