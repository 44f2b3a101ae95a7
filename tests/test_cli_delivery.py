"""The command line of mail, webhooks and the outbox, through click's test runner."""

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from pgusers.cli import main

KEY = "cli-delivery-tests-secret-key"

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("PGUSERS_SECRET_KEY", KEY)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(main, ["--dsn", dsn, "--schema", schema, *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


def test_mail_is_set_shown_and_removed(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "not set up" in cli("mail", "show")[1]
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-secret-1")
    code, out, _ = cli(
        "mail", "set", "smtp.example.com", "--sender", "Example <a@example.com>",
        "--base-url", "https://app.example.com", "--username", "mailer",
        "--password-env", "SMTP_PASSWORD", "--new-device",
    )  # fmt: skip
    assert code == 0 and "smtp.example.com:587 (starttls)" in out
    code, out, _ = cli("mail", "show", "--json")
    shown = json.loads(out)
    assert shown["mail"]["has_password"] is True and shown["mail"]["new_device"] is True
    assert "smtp-secret-1" not in out
    assert cli("mail", "login-by-email", "on")[1] == "sign-in by email is on\n"
    assert json.loads(cli("mail", "show", "--json")[1])["login_by_email"] is True
    assert cli("mail", "remove", "--yes")[0] == 0
    assert cli("mail", "remove", "--yes")[0] == 1


def test_bad_mail_settings_are_one_line_and_exit_2(cli: Cli) -> None:
    code, _, err = cli("mail", "set", "smtp.example.com", "--sender", "a@example.com",
                       "--base-url", "http://app.example.com")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "https" in err
    code, _, err = cli("mail", "set", "h", "--sender", "a@example.com", "--base-url",
                       "https://x.example", "--password-env", "NOT_SET_ANYWHERE")  # fmt: skip
    assert code == 2 and "NOT_SET_ANYWHERE" in err


def test_webhooks_are_added_listed_rotated_and_removed(cli: Cli) -> None:
    code, out, _ = cli("webhook", "add", "https://hooks.example.com/in", "user.created", "*")
    assert code == 0
    webhook_id = out.split()[1]
    secret = out.split("(shown once): ")[1].strip()
    assert secret.startswith("whsec_")
    listed = cli("webhook", "list")[1]
    assert webhook_id in listed and secret not in listed
    assert json.loads(cli("webhook", "list", "--json")[1])[0]["kinds"] == ["*", "user.created"]
    code, out, _ = cli("webhook", "rotate", webhook_id, "--grace", "60")
    assert code == 0 and secret not in out and "whsec_" in out
    assert cli("webhook", "remove", webhook_id)[0] == 0
    code, _, err = cli("webhook", "remove", webhook_id)
    assert code == 1 and "no webhook" in err
    assert cli("webhook", "add", "https://x.example", "Not A Kind")[0] == 2


def test_the_attempts_are_set_and_the_outbox_listed(cli: Cli) -> None:
    assert cli("outbox", "attempts", "3")[1] == "a message is tried 3 times before it is dead\n"
    code, out, _ = cli("outbox", "list", "--json")
    assert code == 0 and json.loads(out)["pending"] == 0
    assert cli("outbox", "attempts", "0")[0] == 2
    assert cli("outbox", "retry")[0] == 2
