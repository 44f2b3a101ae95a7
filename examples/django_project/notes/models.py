from django.db import models


class Note(models.Model):
    """A note of one user: a foreign key to pgusers' users table. The database
    refuses to delete a user who still has notes (Django 5 cannot declare ON DELETE
    CASCADE in the database); delete the notes first, or add the clause in a
    migration of your own."""

    owner = models.ForeignKey("pgusers.User", on_delete=models.CASCADE, related_name="notes")
    text = models.CharField(max_length=500)
    created = models.DateTimeField(auto_now_add=True)
