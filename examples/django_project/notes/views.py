from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

import pgusers
from pgusers.integrations.django import userspace

from .models import Note


def register(request: HttpRequest) -> HttpResponse:
    error = None
    if request.method == "POST":
        try:
            userspace().create_user(
                request.POST["username"], request.POST["password"], request.POST["email"]
            )
        except pgusers.BadCallError as problem:  # a taken name, a bad email address...
            error = str(problem)
        else:
            return redirect("login")
    return render(request, "notes/register.html", {"error": error})


def log_in(request: HttpRequest) -> HttpResponse:
    error = None
    if request.method == "POST":
        user = authenticate(
            request, username=request.POST["username"], password=request.POST["password"]
        )
        if user is not None:
            login(request, user)  # the middleware sets the session cookie
            return redirect("home")
        outcome = getattr(request, "pgusers_outcome", None)
        if outcome is not None and outcome.status == pgusers.THROTTLED:
            error = f"Too many attempts: try again in {outcome.retry_after:.0f} seconds."
        else:
            error = "Wrong username or password."
    return render(request, "notes/login.html", {"error": error})


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        Note.objects.create(owner=request.user, text=request.POST["text"][:500])
        return redirect("home")
    notes = Note.objects.filter(owner=request.user).order_by("-created")
    return render(request, "notes/home.html", {"notes": notes})


@require_POST
def log_out(request: HttpRequest) -> HttpResponse:
    logout(request)  # ends the pgusers session; the middleware clears the cookie
    return redirect("login")
