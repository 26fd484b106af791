from django.contrib import admin

from .models import Export, Post


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "views", "indexed_at", "created_at"]


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["pk", "requested_by", "rows", "file_name", "created_at"]
