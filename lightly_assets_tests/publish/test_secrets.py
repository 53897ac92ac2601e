"""Secrets never reach a message: URLs are shown without credentials, known secrets are masked wherever they are."""

from __future__ import annotations

from lightly_assets.publish.secrets import MASK, mask, mask_url, userinfo


def test_mask_replaces_every_secret_longest_first_and_ignores_short_ones() -> None:
    text = "login hunter2 at hunter2x, key ab"
    assert mask(text, ["hunter2", "hunter2x", "ab", ""]) == f"login {MASK} at {MASK}, key ab"


def test_mask_url_hides_user_info_and_query_but_keeps_where() -> None:
    assert (
        mask_url("postgresql://user:pw@db.internal:5432/studio?sslkey=k")
        == f"postgresql://{MASK}@db.internal:5432/studio?{MASK}"
    )
    assert mask_url("s3://bucket/prefix") == "s3://bucket/prefix"
    assert mask_url("127.0.0.1:6379") == "127.0.0.1:6379"  # a Ray address, no scheme
    assert mask_url("http://[::1") == "<unparseable url>"


def test_userinfo_lists_the_credentials_as_written_and_decoded() -> None:
    assert userinfo("postgresql://me:p%40ss@h/db") == ["me", "p%40ss", "p@ss"]
    assert userinfo("postgresql://h/db") == [] and userinfo("http://[::1") == []
