"""The security administrator's agent pages: enrolment codes, agent list, revocation."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from sqlalchemy import select

from portal.agents import services
from portal.agents.models import Agent
from portal.auth.access import current_actor, require
from portal.auth.roles import Permission
from portal.capture.services import agent_online
from portal.db import db
from portal.org.models import Department, Window

bp = Blueprint("agents", __name__, url_prefix="/agents")


def _page_data() -> dict[str, object]:
    agents = db.session.scalars(select(Agent).order_by(Agent.window_id, Agent.id)).all()
    windows = db.session.scalars(
        select(Window).join(Department).where(Window.active.is_(True)).order_by(Department.code, Window.code)
    ).all()
    return {"agents": agents, "windows": windows, "online": {a.id: agent_online(a) for a in agents}}


@bp.get("/")
@require(Permission.SECURITY_AGENTS)
def index() -> str:
    return render_template("agents/index.html", **_page_data())


@bp.post("/enrolment-codes")
@require(Permission.SECURITY_AGENTS)
def create_code() -> tuple[str, int] | str:
    window = db.session.get(Window, request.form.get("window_id", type=int) or 0)
    if window is None or not window.active:
        return render_template("agents/_code.html", error="请选择有效的窗口。"), 422
    code, row = services.create_enrolment_code(window, current_actor())
    return render_template("agents/_code.html", code=code, row=row, window=window)


@bp.post("/<int:agent_id>/revoke")
@require(Permission.SECURITY_AGENTS)
def revoke(agent_id: int) -> str:
    agent = db.session.get(Agent, agent_id)
    if agent is None:
        abort(404)
    services.revoke(agent, current_actor())
    return render_template("agents/_row.html", agent=agent, online={agent.id: agent_online(agent)})
