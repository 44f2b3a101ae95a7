"""The project's own tests, run by ``python manage.py test`` on a test database that
Django creates (pgusers' tables included, made by its app's first migration)."""

import itertools

from django.contrib.auth import get_user
from django.test import TestCase

from pgusers.integrations.django import userspace
from pgusers.integrations.django.models import User

from .models import Note

PASSWORD = "correct horse battery"  # noqa: S105 - a test account's
names = (f"user{number}" for number in itertools.count())


class FirstHourTests(TestCase):
    def sign_up(self, password: str = PASSWORD, **fields: str) -> str:
        name = next(names)
        form = {"username": name, "email": f"{name}@example.com", "password": password}
        response = self.client.post("/register", form | fields)
        self.assertRedirects(response, "/login", fetch_redirect_response=False)
        return name

    def log_in(self, name: str, password: str = PASSWORD) -> None:
        response = self.client.post("/login", {"username": name, "password": password})
        self.assertRedirects(response, "/", fetch_redirect_response=False)

    def test_register_log_in_keep_a_note_and_log_out(self) -> None:
        name = self.sign_up()
        self.assertRedirects(self.client.get("/"), "/login?next=/")
        self.log_in(name)
        self.assertIn("pgusers_session", self.client.cookies)
        self.client.post("/", {"text": "buy milk"})
        page = self.client.get("/").content.decode()
        self.assertIn(f"Signed in as {name}", page)
        self.assertIn("buy milk", page)
        user = User.objects.get(username=name)
        self.assertEqual([note.text for note in user.notes.all()], ["buy milk"])
        [session] = userspace().sessions(user.userid)
        self.client.post("/logout")
        self.assertEqual(self.client.cookies["pgusers_session"].value, "")
        self.assertEqual(list(userspace().sessions(user.userid)), [])
        self.assertRedirects(self.client.get("/"), "/login?next=/")
        del session

    def test_a_wrong_password_and_a_taken_name_are_told(self) -> None:
        name = self.sign_up()
        response = self.client.post("/login", {"username": name, "password": "wrong"})
        self.assertContains(response, "Wrong username or password.")
        response = self.client.post(
            "/register", {"username": name, "email": "other@example.com", "password": "pw-1"}
        )
        self.assertContains(response, "already exists")

    def test_notes_belong_to_pgusers_users(self) -> None:
        name = self.sign_up()
        user = User.objects.get(username=name)
        Note.objects.create(owner=user, text="mine")
        self.assertEqual(Note.objects.get(owner__username=name).owner, user)
        self.assertFalse(user.is_staff)

    def test_a_password_change_ends_a_django_session_made_by_login(self) -> None:
        name = self.sign_up()
        self.log_in(name)
        request = self.client.get("/").wsgi_request
        self.assertEqual(get_user(request).username, name)
        user = User.objects.get(username=name)
        userspace().change_password(user.userid, "another good password")
        self.assertFalse(get_user(request).is_authenticated)

    def test_the_admin_lists_users_read_only(self) -> None:
        name = self.sign_up()
        userspace().set_admin(User.objects.get(username=name).userid)
        self.log_in(name)
        listing = self.client.get("/admin/pgusers/user/")
        self.assertContains(listing, name)
        self.assertNotContains(listing, "/admin/pgusers/user/add/")
        self.assertEqual(self.client.get("/admin/pgusers/user/add/").status_code, 403)

    def test_the_admin_is_closed_to_other_users(self) -> None:
        name = self.sign_up()
        self.log_in(name)
        response = self.client.get("/admin/pgusers/user/")
        self.assertRedirects(response, "/admin/login/?next=/admin/pgusers/user/")
