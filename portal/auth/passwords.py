"""PBKDF2-HMAC-SM3 password hashes and the complexity policy."""

from __future__ import annotations

import base64
import hmac
import secrets

from gmcrypto.sm3 import pbkdf2_sm3

SCHEME = "pbkdf2-sm3"


def hash_password(password: str, iterations: int) -> str:
    salt = secrets.token_bytes(16)
    digest = pbkdf2_sm3(password.encode("utf-8"), salt, iterations)
    return "$".join(
        [SCHEME, str(iterations), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()]
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt_b64, digest_b64 = stored.split("$")
        if scheme != SCHEME:
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        actual = pbkdf2_sm3(password.encode("utf-8"), salt, int(iterations), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def character_classes(password: str) -> int:
    return sum(
        [
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        ]
    )


def policy_problems(password: str, username: str, min_length: int, min_classes: int) -> list[str]:
    """Chinese messages for every way `password` breaks the policy (empty when it is fine)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"密码长度至少 {min_length} 位。")
    if character_classes(password) < min_classes:
        problems.append(f"密码须包含大写字母、小写字母、数字、符号中的至少 {min_classes} 类。")
    if username and username.lower() in password.lower():
        problems.append("密码不能包含用户名。")
    if len(set(password)) <= 2 and password:
        problems.append("密码不能由重复字符组成。")
    return problems
