"""Access to the registration-system settings (`portal.config.RegistryOptions`).

They are read from the environment with every other setting in `portal/config.py`; a test may put
its own `RegistryOptions` into `app.config["REGISTRY_OPTIONS"]`.
"""

from __future__ import annotations

from flask import Flask, current_app

from portal.config import RegistryOptions

__all__ = ["RegistryOptions", "registry_options"]


def registry_options(app: Flask | None = None) -> RegistryOptions:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    options = app.config.get("REGISTRY_OPTIONS")
    if isinstance(options, RegistryOptions):
        return options
    return app.config["SETTINGS"].registry
