from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = "Sign up a few demo users; each signup enqueues a verification email."

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=3, help="How many users (default 3).")

    def handle(self, *args, **options):
        User = get_user_model()
        start = User.objects.count()
        for number in range(start + 1, start + 1 + options["users"]):
            with transaction.atomic():
                User.objects.create_user(f"reader{number}", f"reader{number}@example.com")
        self.stdout.write(f"Signed up {options['users']} users; their emails are queued.")
