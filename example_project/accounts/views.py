from django import forms
from django.contrib.auth import get_user_model
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render


class SignupForm(forms.ModelForm):
    class Meta:
        model = get_user_model()
        fields = ["username", "email"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True


def signup(request):
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save()  # post_save enqueues the verification email
        return redirect("welcome", user_id=user.pk)
    return render(request, "accounts/signup.html", {"form": form})


def welcome(request, user_id):
    user = get_object_or_404(get_user_model(), pk=user_id)
    return render(request, "accounts/welcome.html", {"user_obj": user})
