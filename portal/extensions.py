"""Flask extensions, created unbound and initialised in `create_app`."""

from flask_htmx import HTMX
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

from portal.db import db

migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = HTMX()

__all__ = ["csrf", "db", "htmx", "login_manager", "migrate"]
