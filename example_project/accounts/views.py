from django import forms
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

#: The session key naming the user this browser just signed up.
SIGNED_UP = "signed_up_user_id"


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
        # Only this browser may see the new account's welcome page (it shows the email).
        request.session[SIGNED_UP] = user.pk
        return redirect("welcome", user_id=user.pk)
    return render(request, "accounts/signup.html", {"form": form})


def welcome(request, user_id):
    """The page after signup: for the browser that signed up, or that user logged in."""
    if user_id not in (request.session.get(SIGNED_UP), request.user.pk):
        raise Http404("No such welcome page.")  # the same answer as for an unknown id
    user = get_object_or_404(get_user_model(), pk=user_id)
    return render(request, "accounts/welcome.html", {"user_obj": user})
