"""Policy files: schema, errors, signers, and CONTAINER_POLICY enforced by the fetcher before any request."""

from __future__ import annotations

import logging
import re

import bb.fetch2
import pytest

from containerlock.lock.policy import PolicyError, load, parse

BASE = "version = 1\n"


def errors(build) -> list[str]:
    return build.events.messages(logging.ERROR)


def test_builtin_policies_load() -> None:
    strict = load("strict")
    assert strict.severity("unpinned") == "error" and "latest" in strict.forbidden_tags
    assert load("default").severity("unpinned") == "warning"


def test_deny_and_warn_are_aliases_and_files_extend_a_builtin(tmp_path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(BASE + 'extends = "strict"\n[rules]\nunpinned = "warn"\nno-tag = "deny"\n')
    policy = load(str(path))
    assert policy.severity("unpinned") == "warning" and policy.severity("no-tag") == "error"
    assert policy.severity("lock-mismatch") == "error"  # from strict
    assert "latest" in policy.forbidden_tags


def test_signers_match_images_and_identities() -> None:
    policy = parse(
        BASE + '[[signers]]\nimages = ["reg.example:5000/team/*"]\nissuer = "https://issuer.example"\n'
        r'identity_regex = "^ci@team\\.example$"'
        "\n"
        '[[signers]]\nimages = ["other.example/*"]\nkey = "keys/cosign.pub"\n',
        "p.toml",
    )
    (team,) = policy.signers_for("reg.example:5000/team/app")
    assert team.accepts("https://issuer.example", "ci@team.example")
    assert not team.accepts("https://issuer.example", "ci@team.example.evil")
    assert not team.accepts("https://other-issuer.example", "ci@team.example")
    (legacy,) = policy.signers_for("other.example/app")
    assert legacy.key == "keys/cosign.pub" and not legacy.accepts("x", "y")
    assert policy.signers_for("unrelated.example/app") == ()


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('[[signers]]\nimages = ["*"]\nissuer = "x"\n', "needs both an issuer and an identity"),
        ('[[signers]]\nkey = "k.pub"\nissuer = "x"\nidentity = "y"\n', "either key"),
        ('[[signers]]\nissuer = "x"\nidentity_regex = "("\n', "not a valid regular expression"),
        ('[[signers]]\nissuer = "x"\nidentity = "y"\nsubject = "z"\n', "unknown key(s) subject"),
        ("signers = 3\n", "must be an array of tables"),
        ('[rules]\nunpinned = "maybe"\n', "use one of error, warning, ignore (or deny, warn)"),
        ("[rules\n", "line 2"),
    ],
)
def test_bad_policies_say_what_and_where(text, complaint) -> None:
    with pytest.raises(PolicyError, match=None) as err:
        parse(BASE + text, "p.toml")
    assert complaint in str(err.value) and str(err.value).startswith("p.toml")


def test_container_policy_refuses_denied_images_before_any_request(
    build, registry, image_factory, tmp_path
) -> None:
    allowed = image_factory.single_arch("policy/app", tag="1.0")
    latest = image_factory.single_arch("policy/app", tag="latest")
    policy = tmp_path / "p.toml"
    policy.write_text(BASE + 'extends = "strict"\n[images]\nallowed_registries = ["127.0.0.1:*"]\n')
    build.set(CONTAINER_POLICY=str(policy))
    mark = registry.mark()
    rec = build.write_recipe(
        "denied_1.0", f'SRC_URI = "docker://{latest.host}/policy/app;tag=latest;digest={latest.digest}"\n'
    )
    with pytest.raises(bb.fetch2.FetchError):
        build.run(rec, "do_fetch")
    assert any(
        re.search(r"denied by CONTAINER_POLICY.*tag 'latest' is not allowed", m) for m in errors(build)
    )
    rec = build.write_recipe(
        "elsewhere_1.0", f'SRC_URI = "docker://reg.example:5000/app;tag=1;digest={allowed.digest}"\n'
    )
    with pytest.raises(bb.fetch2.FetchError):
        build.run(rec, "do_fetch")
    assert any("registry 'reg.example:5000' is not in 127.0.0.1:*" in m for m in errors(build))
    assert registry.requests(mark) == []
    ok = build.write_recipe(
        "allowed_1.0", f'SRC_URI = "docker://{allowed.host}/policy/app;tag=1.0;digest={allowed.digest}"\n'
    )
    build.run(ok, "do_fetch")
    build.set(CONTAINER_POLICY="strict")  # a built-in name works too
    build.events.clear()
    with pytest.raises(bb.fetch2.FetchError) as err:  # denied even though DL_DIR holds the bytes
        build.run(build.recipes / "denied_1.0.bb", "do_fetch")
    assert any(
        "tag 'latest' is not allowed by policy 'strict'" in m for m in [*errors(build), str(err.value)]
    )
