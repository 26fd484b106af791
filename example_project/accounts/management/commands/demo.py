from blog.models import Post
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = (
        "Create demo data: an admin user, authors with posts (each post queues a preview "
        "and a search-engine ping) and readers signing up (each queues a verification email)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=3, help="Readers to sign up (default 3).")
        parser.add_argument("--posts", type=int, default=5, help="Posts per author (default 5).")

    def handle(self, *args, **options):
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
        for name in ("ada", "grace"):
            author, created = User.objects.get_or_create(
                username=name, defaults={"email": f"{name}@example.com"}
            )
            if created:
                for number in range(1, options["posts"] + 1):
                    with transaction.atomic():
                        Post.objects.create(
                            author=author,
                            title=f"{name.title()}'s post {number}",
                            body=f"Notes number {number} from {name}. " * 10,
                            views=number * 7,
                        )
        start = User.objects.filter(username__startswith="reader").count()
        for number in range(start + 1, start + 1 + options["users"]):
            with transaction.atomic():  # the signup and its email job commit together
                User.objects.create_user(f"reader{number}", f"reader{number}@example.com")
        self.stdout.write(
            f"Demo data ready: {Post.objects.count()} posts, {options['users']} new readers. "
            "Admin login: admin / admin"
        )
