"""Makes legacy data with the original package; run inside a virtual environment that
has pgusers 0.9.4 (see tests/test_legacy_import.py), never imported by the suite.

Usage: python legacy_driver.py CONNINFO
Prints one JSON object describing what it made: users (name, password, userid,
admin, extra_data as repr), live sessions (key, userid, extra_data as repr), the
userid deleted, and the key of a session that outlived its user.
"""

import datetime
import decimal
import json
import sys
import uuid

import psycopg

from pgusers import UserSpace


def main() -> None:
    conninfo = sys.argv[1]
    usp = UserSpace(**psycopg.conninfo.conninfo_to_dict(conninfo))
    made = {"users": [], "sessions": []}
    people = [
        ("root", "r00t-Pa55", "root@example.com", True, None),
        (
            "José",
            "contraseña-ñ",
            "jose@example.com",
            False,
            {
                "joined": datetime.datetime(2020, 5, 17, 9, 30, tzinfo=datetime.UTC),
                "born": datetime.date(1990, 1, 2),
                "coords": (1.5, -2.25),
                "tags": {"a", "b"},
                "balance": decimal.Decimal("12.50"),
                "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            },
        ),
        ("gone", "gone-pw", "gone@example.com", False, None),
        ("Ωmega", "ωmega-pw", "omega@example.com", False, [1, "two", None]),
        ("ada", "first-pw", "ada@example.com", False, {"plan": "free"}),
    ]
    for name, password, email, admin, extra in people:
        userid = usp.create_user(name, password, email, admin=admin, extra_data=extra)
        made["users"].append(
            {
                "username": name,
                "password": password,
                "userid": userid,
                "admin": admin,
                "extra_data": repr(extra),
            }
        )
    # ada changes her password: the import must know only the new one.
    ada = made["users"][-1]
    usp.change_password(ada["userid"], "second-pw")
    ada["password"] = "second-pw"
    for user, extra in (
        (made["users"][1], {"ip": "192.0.2.7", "when": datetime.time(8, 0)}),
        (made["users"][4], None),
        (made["users"][0], ("t", 1)),
    ):
        key, _, _ = usp.validate_user(user["username"], user["password"], extra_data=extra)
        made["sessions"].append({"key": key, "userid": user["userid"], "extra_data": repr(extra)})
    # A session of "gone", who is then deleted: 0.9 leaves the session behind.
    gone = made["users"][2]
    orphan, _, _ = usp.validate_user(gone["username"], gone["password"])
    usp.delete_user(userid=gone["userid"])
    made["users"].remove(gone)
    made["deleted_userid"] = gone["userid"]
    made["orphan_key"] = orphan
    # A session that has expired already.
    usp.set_session_TTL(1)
    expired, _, _ = usp.validate_user("root", "r00t-Pa55")
    made["expired_key"] = expired
    print(json.dumps(made))


if __name__ == "__main__":
    main()
