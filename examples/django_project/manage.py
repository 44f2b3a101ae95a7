#!/usr/bin/env python
"""A first Django project on pgusers: register, log in, a page of your own notes,
log out. See README.md beside this file."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
