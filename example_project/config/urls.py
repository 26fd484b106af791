from accounts import views
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("", views.signup, name="signup"),
    path("welcome/<int:user_id>/", views.welcome, name="welcome"),
    path("admin/", admin.site.urls),
]
