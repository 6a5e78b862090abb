"""The deliveries' two statements in plain SQL (playground/models.py DeliveryManager)
write what the ORM would: the same columns, the same refusals."""

import uuid

import pytest
from django.db import IntegrityError
from django.utils import timezone

from playground.models import Delivery, Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def notification():
    return Notification.objects.create(id=uuid.uuid4(), message="Spring sale")


def test_an_inserted_delivery_reads_back_as_one_the_orm_saved(notification, customers):
    before = timezone.now()
    inserted = Delivery(notification=notification, customer=customers[0], status="sending")
    saved = Delivery(notification=notification, customer=customers[1], status="sending")

    Delivery.objects.insert(inserted)
    saved.save()

    assert inserted.pk is not None
    stored = Delivery.objects.get(pk=inserted.pk)
    assert (stored.notification, stored.customer) == (notification, customers[0])
    assert (stored.status, stored.error) == ("sending", "")
    assert before <= stored.at <= Delivery.objects.get(pk=saved.pk).at


def test_a_second_delivery_to_the_same_customer_is_refused(notification, customers):
    Delivery.objects.insert(Delivery(notification=notification, customer=customers[0]))

    with pytest.raises(IntegrityError):
        Delivery.objects.insert(Delivery(notification=notification, customer=customers[0]))


def test_concluding_a_delivery_sets_its_status_and_error_and_keeps_its_time(
    notification, customers
):
    intent = Delivery(notification=notification, customer=customers[0], status="sending")
    Delivery.objects.insert(intent)
    other = Delivery.objects.create(notification=notification, customer=customers[1])
    at = Delivery.objects.get(pk=intent.pk).at

    Delivery.objects.conclude(intent.pk, "failed", "550 'no such user'")

    concluded = Delivery.objects.get(pk=intent.pk)
    assert (concluded.status, concluded.error, concluded.at) == ("failed", "550 'no such user'", at)
    assert Delivery.objects.get(pk=other.pk).status == ""
