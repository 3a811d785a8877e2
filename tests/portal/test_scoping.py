"""The one department-scoping helper, and that pages use it."""

from __future__ import annotations

from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.db import db
from portal.registry.models import Business
from portal.scoping import scope_for
from tests.conftest import login


def test_scope_is_the_department_subtree(factory, org) -> None:
    in_a = factory.business(org.office_a)
    in_b = factory.business(org.office_b)
    in_c = factory.business(org.office_c)
    clerk_a = factory.user("clerk", org.office_a)
    supervisor_det1 = factory.user("supervisor", org.det1)

    def visible(user, **kw) -> set[int]:
        stmt = scope_for(user, **kw).apply(select(Business.id), Business.department_id)
        return set(db.session.scalars(stmt))

    assert visible(clerk_a) == {in_a.id}
    assert visible(supervisor_det1) == {in_a.id, in_b.id}
    # Asking for cross-department lookup without the right changes nothing.
    assert visible(clerk_a, cross_department=True) == {in_a.id}
    viewer_c = factory.user("viewer", org.office_c)
    assert visible(viewer_c) == {in_c.id}
    assert visible(viewer_c, cross_department=True) == {in_a.id, in_b.id, in_c.id}
    assert scope_for(supervisor_det1).allows(org.office_b.id)
    assert not scope_for(supervisor_det1).allows(org.office_c.id)


def test_prefix_of_a_path_is_not_a_subtree(factory, org) -> None:
    """Department /1/2/ must not see /1/23/: the path ends with a slash."""
    paths = {d.path for d in (org.hq, org.det1, org.det2, org.office_a, org.office_b, org.office_c)}
    assert all(p.startswith("/") and p.endswith("/") for p in paths)
    assert len(paths) == 6


def test_clerk_of_office_a_gets_404_for_office_b_business(client, factory, org) -> None:
    business_b = factory.business(org.office_b)
    business_a = factory.business(org.office_a)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    assert client.get(f"/archive/business/{business_a.id}").status_code == 200
    assert client.get(f"/archive/business/{business_b.id}").status_code == 404
    assert client.get("/archive/business/999999").status_code == 404
    denied = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "archive.viewed", AuditEntry.outcome == "denied")
    ).all()
    assert [e.object_id for e in denied] == [str(business_b.id), "999999"]


def test_viewer_sees_other_office_only_with_a_reason(client, factory, org) -> None:
    business_a = factory.business(org.office_a)
    viewer = factory.user("viewer", org.office_c)
    login(client, viewer.username)
    assert client.get(f"/archive/business/{business_a.id}").status_code == 404
    assert client.get(f"/archive/business/{business_a.id}?cross=1").status_code == 404
    response = client.get(f"/archive/business/{business_a.id}?cross=1&reason=协查")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "310***********1234" in page
    assert "310115199001011234" not in page
    entry = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "archive.viewed", AuditEntry.outcome == "success")
    ).one()
    assert entry.reason == "协查"
