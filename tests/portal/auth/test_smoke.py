from tests.conftest import login


def test_login_page_renders(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert "登录" in response.get_data(as_text=True)


def test_clerk_signs_in(client, factory):
    user = factory.user("clerk")
    response = login(client, user.username)
    assert response.status_code == 302
