from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from django_dbtasks.models import Job

from .models import Export, Post
from .tasks import export_posts


def post_list(request):
    return render(request, "blog/post_list.html", {"posts": Post.objects.order_by("-pk")[:20]})


@staff_member_required
@require_POST
def start_export(request):
    export = Export.objects.create(requested_by=request.user)
    result = export_posts.enqueue(export.pk)
    export.job_id = result.id
    export.save(update_fields=["job_id"])
    return redirect("export", export_id=export.pk)


@staff_member_required
def export_status(request, export_id):
    """The export's progress while it runs (the page reloads itself), then a download link."""
    export = get_object_or_404(Export, pk=export_id)
    job = Job.objects.filter(pk=export.job_id).first()
    return render(request, "blog/export.html", {"export": export, "job": job})


@staff_member_required
def download_export(request, export_id):
    export = get_object_or_404(Export, pk=export_id)
    if not export.file_name:
        raise Http404("This export is not finished yet.")
    path = settings.VAR_DIR / "exports" / export.file_name
    return FileResponse(open(path, "rb"), as_attachment=True, filename=export.file_name)
