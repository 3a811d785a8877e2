"""Administration pages (organisation, dictionary, users, roles, security policy).

Thin views: parse the request, call a service, render a page or an HTMX fragment. Refused edits
come back as the fragment with a Chinese message and status 422; unknown ids are 404.
"""

from __future__ import annotations

from typing import Any, TypeVar

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from portal.admin import forms
from portal.admin import services as admin
from portal.app import _wants_fragment
from portal.auth.access import current_actor, require
from portal.auth.models import User
from portal.auth.roles import ROLE_PERMISSIONS, Permission, Role
from portal.db import db
from portal.dictionary import services as dictionary
from portal.dictionary.models import BusinessType, ColorMode, Material, Requirement
from portal.org import services as org
from portal.org.models import Department, DepartmentKind, Window

bp = Blueprint("admin", __name__, url_prefix="/admin")

P = Permission
Page = str | Response | tuple[str, int]

UNPROCESSABLE = 422


@bp.app_template_filter("minutes")
def minutes_filter(value: int) -> str:
    """60 → "1 小时", 1440 → "1 天", 90 → "1 小时 30 分"."""
    days, rest = divmod(int(value), 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} 天" if days else "", f"{hours} 小时" if hours else "", f"{mins} 分" if mins else ""]
    return " ".join(p for p in parts if p) or "0 分"


M = TypeVar("M")


def _get_or_404(model: type[M], ident: int) -> M:
    if ident > forms.INT_MAX:
        abort(404)
    return db.get_or_404(model, ident)


def _render(fragment: str, page: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """The fragment for a plain HTMX request, the full page otherwise."""
    return render_template(fragment if _wants_fragment() else page, **context), status


def _retarget(html: str, target: str) -> Response:
    """Answer an inline-edit row with a whole panel (after a change that touches more rows)."""
    response = make_response(html)
    response.headers["HX-Retarget"] = target
    response.headers["HX-Reswap"] = "outerHTML"
    return response


def _row_or_page(template: str, page_url: str, status: int = 200, **context: Any) -> Page:
    """Row fragments only make sense inside the page: without HTMX, go to the page."""
    if not _wants_fragment():
        if context.get("row_error"):
            flash(context["row_error"], "error")
        return redirect(page_url)
    return render_template(template, **context), status


# ---------------------------------------------------------------------------------------------
# Departments and windows (system administrator)
# ---------------------------------------------------------------------------------------------


def _org_context(**extra: Any) -> dict[str, Any]:
    tree = org.department_tree()
    context: dict[str, Any] = {
        "tree": tree,
        "kinds": list(DepartmentKind),
        "parent_options": [n for n in tree if n.department.kind != DepartmentKind.OFFICE
                           and n.department.active],
        "office_options": [n for n in tree if n.department.kind == DepartmentKind.OFFICE
                           and n.department.active],
        "error": None, "notice": None, "dept_form": {}, "window_form": {},
    }
    context.update(extra)
    return context


def _org_panel(status: int = 200, **extra: Any) -> Page:
    if not _wants_fragment() and status == 200 and extra.get("notice"):
        flash(extra["notice"], "success")
        return redirect(url_for("admin.departments"))
    return _render("admin/_org_panel.html", "admin/departments.html", status, **_org_context(**extra))


@bp.get("/departments")
@require(P.ADMIN_ORG)
def departments() -> Page:
    return _render("admin/_org_panel.html", "admin/departments.html", **_org_context())


@bp.post("/departments")
@require(P.ADMIN_ORG)
def department_create() -> Page:
    form = {k: forms.text(request.form, k) for k in ("code", "name", "kind", "parent_id")}
    try:
        kind = DepartmentKind(form["kind"])
    except ValueError:
        return _org_panel(UNPROCESSABLE, error="请选择部门类型。", dept_form=form)
    parent_id = forms.optional_int(request.form, "parent_id")
    parent = db.session.get(Department, parent_id) if parent_id is not None else None
    if parent_id is not None and parent is None:
        return _org_panel(UNPROCESSABLE, error="所选上级部门不存在。", dept_form=form)
    try:
        department = org.create_department(
            code=form["code"], name=form["name"], kind=kind, parent=parent, by=current_actor()
        )
    except org.OrgError as exc:
        return _org_panel(UNPROCESSABLE, error=str(exc), dept_form=form)
    return _org_panel(notice=f"已新增部门“{department.name}”。")


@bp.get("/departments/<int:department_id>/edit")
@require(P.ADMIN_ORG)
def department_edit(department_id: int) -> Page:
    department = _get_or_404(Department, department_id)
    return _row_or_page("admin/_department_edit_row.html", url_for("admin.departments"),
                        **_department_row_context(department))


@bp.get("/departments/<int:department_id>/row")
@require(P.ADMIN_ORG)
def department_row(department_id: int) -> Page:
    department = _get_or_404(Department, department_id)
    return _row_or_page("admin/_department_row.html", url_for("admin.departments"),
                        **_department_row_context(department))


def _department_row_context(department: Department, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "d": department, "depth": department.depth, "parents": org.possible_parents(department),
        "row_error": None, "name": department.name, "parent_id": department.parent_id,
    }
    context.update(extra)
    return context


@bp.post("/departments/<int:department_id>")
@require(P.ADMIN_ORG)
def department_update(department_id: int) -> Page:
    department = _get_or_404(Department, department_id)
    name = forms.text(request.form, "name")
    parent_id = forms.optional_int(request.form, "parent_id")
    parent = db.session.get(Department, parent_id) if parent_id is not None else None
    try:
        if parent_id is not None and parent is None:
            raise org.OrgError("所选上级部门不存在。")
        org.update_department(department, name=name, parent=parent, by=current_actor())
    except org.OrgError as exc:
        if not _wants_fragment():
            flash(str(exc), "error")
            return redirect(url_for("admin.departments"))
        return render_template("admin/_department_edit_row.html", **_department_row_context(
            department, row_error=str(exc), name=name, parent_id=parent_id)), UNPROCESSABLE
    if not _wants_fragment():
        flash("已保存。", "success")
        return redirect(url_for("admin.departments"))
    html = render_template("admin/_org_panel.html", **_org_context(notice=f"已保存部门“{department.name}”。"))
    return _retarget(html, "#org-panel")


@bp.post("/departments/<int:department_id>/active")
@require(P.ADMIN_ORG)
def department_active(department_id: int) -> Page:
    department = _get_or_404(Department, department_id)
    active = forms.checkbox(request.form, "active")
    try:
        org.set_department_active(department, active, current_actor())
    except org.OrgError as exc:
        return _org_panel(UNPROCESSABLE, error=str(exc))
    return _org_panel(notice=f"已{'启用' if active else '停用'}部门“{department.name}”。")


@bp.post("/departments/<int:department_id>/delete")
@require(P.ADMIN_ORG)
def department_delete(department_id: int) -> Page:
    department = _get_or_404(Department, department_id)
    name = department.name
    try:
        org.delete_department(department, current_actor())
    except org.OrgError as exc:
        return _org_panel(UNPROCESSABLE, error=str(exc))
    return _org_panel(notice=f"已删除部门“{name}”。")


@bp.post("/windows")
@require(P.ADMIN_ORG)
def window_create() -> Page:
    form = {k: forms.text(request.form, k) for k in ("office_id", "code", "name")}
    office_id = forms.optional_int(request.form, "office_id")
    office = db.session.get(Department, office_id) if office_id is not None else None
    if office is None:
        return _org_panel(UNPROCESSABLE, error="请选择窗口所属的大队/登记点。", window_form=form)
    try:
        window = org.create_window(department=office, code=form["code"], name=form["name"],
                                   by=current_actor())
    except org.OrgError as exc:
        return _org_panel(UNPROCESSABLE, error=str(exc), window_form=form)
    return _org_panel(notice=f"已在“{office.name}”新增窗口“{window.name}”。")


def _window_row(window: Window, status: int = 200, edit: bool = False, **extra: Any) -> Page:
    template = "admin/_window_edit_row.html" if edit else "admin/_window_row.html"
    context: dict[str, Any] = {"w": window, "depth": window.department.depth + 1, "row_error": None,
                               "name": window.name}
    context.update(extra)
    return _row_or_page(template, url_for("admin.departments"), status, **context)


@bp.get("/windows/<int:window_id>/edit")
@require(P.ADMIN_ORG)
def window_edit(window_id: int) -> Page:
    return _window_row(_get_or_404(Window, window_id), edit=True)


@bp.get("/windows/<int:window_id>/row")
@require(P.ADMIN_ORG)
def window_row(window_id: int) -> Page:
    return _window_row(_get_or_404(Window, window_id))


@bp.post("/windows/<int:window_id>")
@require(P.ADMIN_ORG)
def window_update(window_id: int) -> Page:
    window = _get_or_404(Window, window_id)
    name = forms.text(request.form, "name")
    try:
        org.rename_window(window, name, current_actor())
    except org.OrgError as exc:
        return _window_row(window, UNPROCESSABLE, edit=True, row_error=str(exc), name=name)
    return _window_row(window, row_saved=True)


@bp.post("/windows/<int:window_id>/active")
@require(P.ADMIN_ORG)
def window_active(window_id: int) -> Page:
    window = _get_or_404(Window, window_id)
    try:
        org.set_window_active(window, forms.checkbox(request.form, "active"), current_actor())
    except org.OrgError as exc:
        return _window_row(window, UNPROCESSABLE, row_error=str(exc))
    return _window_row(window, row_saved=True)


# ---------------------------------------------------------------------------------------------
# Data dictionary (system administrator)
# ---------------------------------------------------------------------------------------------

DICTIONARY_TABS = {"checklist": "材料目录", "types": "业务类型与预警时限", "materials": "材料与扫描参数"}


def _dictionary_context(tab: str, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "tab": tab, "tabs": DICTIONARY_TABS, "requirements": list(Requirement),
        "color_modes": list(ColorMode), "triggers": dictionary.TRIGGER_LABELS,
        "error": None, "notice": None, "form": {},
    }
    if tab == "checklist":
        context["matrix"] = dictionary.checklist_matrix()
    elif tab == "types":
        context["types"] = dictionary.business_types()
        context["usage"] = dictionary.checklist_usage()
    else:
        context["materials"] = dictionary.materials()
        context["usage"] = dictionary.checklist_usage()
    context.update(extra)
    return context


@bp.get("/dictionary", endpoint="dictionary")
@require(P.ADMIN_DICTIONARY)
def dictionary_page() -> Page:
    tab = request.args.get("tab", "checklist")
    if tab not in DICTIONARY_TABS:
        tab = "checklist"
    fragment = {"checklist": "admin/_matrix.html", "types": "admin/_types.html",
                "materials": "admin/_materials.html"}[tab]
    return _render(fragment, "admin/dictionary.html", **_dictionary_context(tab))


@bp.post("/dictionary/checklist/<int:type_id>/<int:material_id>")
@require(P.ADMIN_DICTIONARY)
def checklist_cell(type_id: int, material_id: int) -> Page:
    business_type = _get_or_404(BusinessType, type_id)
    material = _get_or_404(Material, material_id)
    recomputed = 0
    try:
        item, recomputed = dictionary.set_checklist_cell(
            business_type, material, forms.text(request.form, "requirement"), current_actor()
        )
    except dictionary.DictionaryError as exc:
        item, error = dictionary.checklist_cell(business_type, material), str(exc)
        status = UNPROCESSABLE
    else:
        error, status = None, 200
    if not _wants_fragment():
        if error:
            flash(error, "error")
        return redirect(url_for("admin.dictionary", tab="checklist"))
    return render_template("admin/_matrix_cell.html", bt=business_type, m=material, item=item,
                           requirements=list(Requirement), cell_saved=error is None,
                           cell_error=error, recomputed=recomputed), status


@bp.post("/dictionary/types")
@require(P.ADMIN_DICTIONARY)
def business_type_create() -> Page:
    form = {k: forms.text(request.form, k) for k in ("code", "name")}
    try:
        bt = dictionary.create_business_type(code=form["code"], name=form["name"], by=current_actor())
    except dictionary.DictionaryError as exc:
        return _render("admin/_types.html", "admin/dictionary.html", UNPROCESSABLE,
                       **_dictionary_context("types", error=str(exc), form=form))
    notice = f"已新增业务类型“{bt.name}”，请在“材料目录”中设置它需要的材料。"
    if not _wants_fragment():
        flash(notice, "success")
        return redirect(url_for("admin.dictionary", tab="types"))
    return render_template("admin/_types.html", **_dictionary_context("types", notice=notice))


def _type_row(bt: BusinessType, status: int = 200, edit: bool = False, **extra: Any) -> Page:
    context: dict[str, Any] = {"bt": bt, "row_error": None, "form": None,
                               "triggers": dictionary.TRIGGER_LABELS,
                               "usage": dictionary.checklist_usage()}
    context.update(extra)
    template = "admin/_type_edit_row.html" if edit else "admin/_type_row.html"
    return _row_or_page(template, url_for("admin.dictionary", tab="types"), status, **context)


@bp.get("/dictionary/types/<int:type_id>/edit")
@require(P.ADMIN_DICTIONARY)
def business_type_edit(type_id: int) -> Page:
    return _type_row(_get_or_404(BusinessType, type_id), edit=True)


@bp.get("/dictionary/types/<int:type_id>/row")
@require(P.ADMIN_DICTIONARY)
def business_type_row(type_id: int) -> Page:
    return _type_row(_get_or_404(BusinessType, type_id))


@bp.post("/dictionary/types/<int:type_id>")
@require(P.ADMIN_DICTIONARY)
def business_type_update(type_id: int) -> Page:
    bt = _get_or_404(BusinessType, type_id)
    f = request.form
    try:
        dictionary.update_business_type(
            bt, name=forms.text(f, "name"), active=forms.checkbox(f, "active"),
            warning_trigger=forms.text(f, "warning_trigger"),
            reminder=forms.optional_int(f, "reminder"), warning=forms.optional_int(f, "warning"),
            escalation=forms.optional_int(f, "escalation"), by=current_actor(),
        )
    except dictionary.DictionaryError as exc:
        form = {k: forms.text(f, k) for k in ("name", "warning_trigger", "reminder", "warning",
                                               "escalation")}
        form["active"] = forms.checkbox(f, "active")
        return _type_row(bt, UNPROCESSABLE, edit=True, row_error=str(exc), form=form)
    return _type_row(bt, row_saved=True)


@bp.post("/dictionary/materials")
@require(P.ADMIN_DICTIONARY)
def material_create() -> Page:
    form = {k: forms.text(request.form, k) for k in ("code", "name")}
    try:
        m = dictionary.create_material(code=form["code"], name=form["name"], by=current_actor())
    except dictionary.DictionaryError as exc:
        return _render("admin/_materials.html", "admin/dictionary.html", UNPROCESSABLE,
                       **_dictionary_context("materials", error=str(exc), form=form))
    notice = f"已新增材料“{m.name}”，请在“材料目录”中设置哪些业务类型需要它。"
    if not _wants_fragment():
        flash(notice, "success")
        return redirect(url_for("admin.dictionary", tab="materials"))
    return render_template("admin/_materials.html", **_dictionary_context("materials", notice=notice))


def _material_row(m: Material, status: int = 200, edit: bool = False, **extra: Any) -> Page:
    context: dict[str, Any] = {"m": m, "row_error": None, "form": None, "color_modes": list(ColorMode),
                               "usage": dictionary.checklist_usage()}
    context.update(extra)
    template = "admin/_material_edit_row.html" if edit else "admin/_material_row.html"
    return _row_or_page(template, url_for("admin.dictionary", tab="materials"), status, **context)


@bp.get("/dictionary/materials/<int:material_id>/edit")
@require(P.ADMIN_DICTIONARY)
def material_edit(material_id: int) -> Page:
    return _material_row(_get_or_404(Material, material_id), edit=True)


@bp.get("/dictionary/materials/<int:material_id>/row")
@require(P.ADMIN_DICTIONARY)
def material_row(material_id: int) -> Page:
    return _material_row(_get_or_404(Material, material_id))


@bp.post("/dictionary/materials/<int:material_id>")
@require(P.ADMIN_DICTIONARY)
def material_update(material_id: int) -> Page:
    m = _get_or_404(Material, material_id)
    f = request.form
    try:
        dictionary.update_material(
            m, name=forms.text(f, "name"), color_mode=forms.text(f, "color_mode"),
            dpi=forms.optional_int(f, "dpi"), active=forms.checkbox(f, "active"), by=current_actor(),
        )
    except dictionary.DictionaryError as exc:
        form: dict[str, Any] = {k: forms.text(f, k) for k in ("name", "color_mode", "dpi")}
        form["active"] = forms.checkbox(f, "active")
        return _material_row(m, UNPROCESSABLE, edit=True, row_error=str(exc), form=form)
    return _material_row(m, row_saved=True)


# ---------------------------------------------------------------------------------------------
# User accounts (system administrator)
# ---------------------------------------------------------------------------------------------

USER_STATES = {"": "全部状态", "active": "启用", "inactive": "已停用", "locked": "已锁定",
               "admins": "管理员账号"}


def _department_options(include_id: int | None = None) -> list[tuple[int, str]]:
    return [
        (n.department.id, "　" * n.depth + n.department.name)
        for n in org.department_tree()
        if n.department.active or n.department.id == include_id
    ]


def _search_args() -> dict[str, Any]:
    state = request.args.get("state", "")
    return {
        "q": forms.text(request.args, "q", 64),
        "department_id": forms.optional_int(request.args, "department_id"),
        "state": state if state in USER_STATES else "",
    }


def _users_context(**extra: Any) -> dict[str, Any]:
    search = _search_args()
    context: dict[str, Any] = {
        "search": search, "states": USER_STATES,
        "users": admin.search_accounts(search["q"], search["department_id"], search["state"]),
        "limit": admin.SEARCH_LIMIT, "departments": _department_options(),
        "initial_roles": admin.INITIAL_ROLES, "form": {}, "windows": [], "error": None,
        "created": None, "is_locked": admin.is_locked,
    }
    context.update(extra)
    return context


@bp.get("/users")
@require(P.ADMIN_USERS)
def users() -> Page:
    return _render("admin/_user_list.html", "admin/users.html", **_users_context())


@bp.get("/users/windows")
@require(P.ADMIN_USERS)
def user_window_options() -> Page:
    department_id = forms.optional_int(request.args, "department_id")
    windows = org.windows_of(department_id) if department_id is not None else []
    return render_template("admin/_window_options.html", windows=windows, selected=None)


@bp.post("/users")
@require(P.ADMIN_USERS)
def user_create() -> Page:
    f = request.form
    form: dict[str, Any] = {k: forms.text(f, k, 100) for k in
                            ("username", "full_name", "badge_number", "role")}
    form["department_id"] = forms.optional_int(f, "department_id")
    form["window_id"] = forms.optional_int(f, "window_id")
    windows = org.windows_of(form["department_id"]) if form["department_id"] is not None else []
    try:
        created = admin.create_account(
            username=form["username"], full_name=form["full_name"], badge_number=form["badge_number"],
            department_id=form["department_id"], window_id=form["window_id"], role=form["role"],
            password=f.get("password", ""), settings=current_app.config["SETTINGS"], by=current_actor(),
        )
    except admin.AdminError as exc:
        return _render("admin/_user_create.html", "admin/users.html", UNPROCESSABLE,
                       **_users_context(error=str(exc), form=form, windows=windows))
    # The generated password is in this one answer only (never flashed into the session cookie).
    html, status = _render("admin/_user_create.html", "admin/users.html",
                           **_users_context(created=created))
    response = make_response(html, status)
    response.headers["HX-Trigger"] = "users-changed"
    return response


def _user_row(user: User, status: int = 200, edit: bool = False, **extra: Any) -> Page:
    context: dict[str, Any] = {"u": user, "row_error": None, "form": None, "is_locked": admin.is_locked}
    if edit:
        department_id = (extra.get("form") or {}).get("department_id", user.department_id)
        context["departments"] = _department_options(include_id=user.department_id)
        context["windows"] = org.windows_of(department_id) if department_id else []
    context.update(extra)
    template = "admin/_user_edit_row.html" if edit else "admin/_user_row.html"
    return _row_or_page(template, url_for("admin.users"), status, **context)


@bp.get("/users/<int:user_id>/edit")
@require(P.ADMIN_USERS)
def user_edit(user_id: int) -> Page:
    return _user_row(_get_or_404(User, user_id), edit=True)


@bp.get("/users/<int:user_id>/row")
@require(P.ADMIN_USERS)
def user_row(user_id: int) -> Page:
    return _user_row(_get_or_404(User, user_id))


@bp.post("/users/<int:user_id>")
@require(P.ADMIN_USERS)
def user_update(user_id: int) -> Page:
    user = _get_or_404(User, user_id)
    f = request.form
    form: dict[str, Any] = {"full_name": forms.text(f, "full_name", 100),
                            "badge_number": forms.text(f, "badge_number", 32),
                            "department_id": forms.optional_int(f, "department_id"),
                            "window_id": forms.optional_int(f, "window_id")}
    try:
        admin.update_account(user, by=current_actor(), **form)
    except admin.AdminError as exc:
        return _user_row(user, UNPROCESSABLE, edit=True, row_error=str(exc), form=form)
    return _user_row(user, row_saved=True)


@bp.post("/users/<int:user_id>/active")
@require(P.ADMIN_USERS)
def user_active(user_id: int) -> Page:
    user = _get_or_404(User, user_id)
    try:
        admin.set_account_active(user, forms.checkbox(request.form, "active"), current_actor())
    except admin.AdminError as exc:
        return _user_row(user, UNPROCESSABLE, row_error=str(exc))
    return _user_row(user, row_saved=True)


# ---------------------------------------------------------------------------------------------
# Roles, passwords, unlock (security administrator)
# ---------------------------------------------------------------------------------------------


def _roles_context(**extra: Any) -> dict[str, Any]:
    search = _search_args()
    context: dict[str, Any] = {
        "search": search, "states": USER_STATES,
        "users": admin.search_accounts(search["q"], search["department_id"], search["state"]),
        "limit": admin.SEARCH_LIMIT, "departments": _department_options(),
        "is_locked": admin.is_locked, "all_roles": list(Role), "notice": None, "new_password": None,
        "target": None, "error": None,
    }
    context.update(extra)
    return context


@bp.get("/roles")
@require(P.SECURITY_ROLES, P.SECURITY_PASSWORDS)
def roles() -> Page:
    return _render("admin/_role_list.html", "admin/roles.html", **_roles_context())


def _role_row(user: User, status: int = 200, edit: bool = False, **extra: Any) -> Page:
    """A row of the roles table; without HTMX the whole page, with the row's message on top."""
    context: dict[str, Any] = {"u": user, "row_error": None, "row_notice": None, "new_password": None,
                               "chosen": None, "is_locked": admin.is_locked, "all_roles": list(Role)}
    context.update(extra)
    if not _wants_fragment():
        page = _roles_context(target=user, error=context["row_error"], notice=context["row_notice"],
                              new_password=context["new_password"])
        return render_template("admin/roles.html", **page), status
    template = "admin/_role_edit_row.html" if edit else "admin/_role_row.html"
    return render_template(template, **context), status


@bp.get("/roles/<int:user_id>/edit")
@require(P.SECURITY_ROLES)
def roles_edit(user_id: int) -> Page:
    return _role_row(_get_or_404(User, user_id), edit=True)


@bp.get("/roles/<int:user_id>/row")
@require(P.SECURITY_ROLES, P.SECURITY_PASSWORDS)
def roles_row(user_id: int) -> Page:
    return _role_row(_get_or_404(User, user_id))


@bp.post("/roles/<int:user_id>")
@require(P.SECURITY_ROLES)
def roles_update(user_id: int) -> Page:
    user = _get_or_404(User, user_id)
    chosen = request.form.getlist("roles")
    try:
        changed = admin.change_roles(user, chosen, current_actor())
    except admin.AdminError as exc:
        return _role_row(user, UNPROCESSABLE, edit=True, row_error=str(exc), chosen=chosen)
    return _role_row(user, row_notice="角色已修改，用户重新登录后生效。" if changed else "角色未变化。")


@bp.post("/roles/<int:user_id>/password")
@require(P.SECURITY_PASSWORDS)
def password_reset(user_id: int) -> Page:
    user = _get_or_404(User, user_id)
    try:
        password = admin.reset_user_password(user, current_app.config["SETTINGS"], current_actor())
    except admin.AdminError as exc:
        return _role_row(user, UNPROCESSABLE, row_error=str(exc))
    return _role_row(user, new_password=password)


@bp.post("/roles/<int:user_id>/unlock")
@require(P.SECURITY_PASSWORDS)
def account_unlock(user_id: int) -> Page:
    user = _get_or_404(User, user_id)
    try:
        admin.unlock_account(user, current_actor())
    except admin.AdminError as exc:
        return _role_row(user, UNPROCESSABLE, row_error=str(exc))
    return _role_row(user, row_notice=f"账号“{user.username}”已解锁。")


# ---------------------------------------------------------------------------------------------
# Security policy (security administrator, read-only)
# ---------------------------------------------------------------------------------------------


@bp.get("/security-policy")
@require(P.SECURITY_POLICY)
def security_policy() -> Page:
    settings = current_app.config["SETTINGS"]
    role_permissions = [
        (role, sorted(ROLE_PERMISSIONS[role], key=list(Permission).index)) for role in Role
    ]
    return render_template(
        "admin/security_policy.html", rows=admin.security_policy(settings),
        role_permissions=role_permissions, permission_labels=admin.PERMISSION_LABELS,
    )
