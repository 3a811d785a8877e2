"""The archive-imaging portal: a Flask + HTMX intranet application."""

from portal.app import create_app

__all__ = ["create_app"]
