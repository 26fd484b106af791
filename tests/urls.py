import json

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from django_dbtasks import metrics

from .testapp import tasks


@csrf_exempt
def enqueue_add(request: HttpRequest) -> JsonResponse:
    """A view that enqueues, as a site's would: the standard API only."""
    result = tasks.add.enqueue(int(request.POST["a"]), int(request.POST["b"]))
    return JsonResponse({"id": result.id}, status=201)


def read_result(request: HttpRequest, job_id: str) -> JsonResponse:
    """A later request, another process perhaps, reads the result by its id."""
    result = tasks.add.get_result(job_id)
    body = {
        "status": str(result.status.value if hasattr(result.status, "value") else result.status)
    }
    if result.is_finished and result.errors == []:
        body["return_value"] = json.loads(json.dumps(result.return_value))
    return JsonResponse(body)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics.view),
    path("tasks-test/add/", enqueue_add),
    path("tasks-test/result/<str:job_id>/", read_result),
]
