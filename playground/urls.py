from django.urls import path

from . import views

urlpatterns = [
    path("hello/", views.say_hello),
    path(
        "notifications/<str:notification_id>/",
        views.notification_status,
        name="notification-status",
    ),
]
