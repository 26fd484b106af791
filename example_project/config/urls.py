from accounts import views as accounts
from blog import views as blog
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("", blog.post_list, name="posts"),
    path("signup/", accounts.signup, name="signup"),
    path("welcome/<int:user_id>/", accounts.welcome, name="welcome"),
    path("exports/", blog.start_export, name="start-export"),
    path("exports/<int:export_id>/", blog.export_status, name="export"),
    path("exports/<int:export_id>/download/", blog.download_export, name="download-export"),
    path("admin/", admin.site.urls),
]
