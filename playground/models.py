from django.conf import settings
from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper


class OutboxMessage(models.Model):
    """A task message the broker could not take when it was sent (Redis down or hung),
    kept until relay_outbox hands it over. It keeps its task id, so a task can tell a
    relayed message from a new one."""

    task_id = models.UUIDField(unique=True)
    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    options = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.task}[{self.task_id}]"


class Notification(models.Model):
    """One run of notify_customers: its id is the task's id. Progress is counted from
    its deliveries, never stored twice. At most one notification is active (not done)
    at a time: the database refuses a second, whoever asks."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"

    id = models.UUIDField(primary_key=True)
    message = models.TextField()
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    # Why it was finished before every customer was tried (its work was lost).
    reason = models.TextField(blank=True)
    # True while not done, NULL once done: unique, so only one can be True.
    active = models.GeneratedField(
        expression=models.Case(
            models.When(~models.Q(status="done"), then=models.Value(True)), default=None
        ),
        output_field=models.BooleanField(null=True),
        db_persist=True,
    )

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["active"], name="one_active_notification")]

    def __str__(self):
        return f"{self.message!r} [{self.id}]"


class DeliveryManager(models.Manager["Delivery"]):
    """The two statements every email of a notification runs, each one plain SQL:
    through the ORM, building them took more CPU than the rest of the email
    (docs/measured.md: the job). They are built from the model's own fields, so a migration
    that changes the table changes them too."""

    def insert(self, delivery: "Delivery") -> None:
        """INSERT the unsaved delivery and set its id, as save() would; IntegrityError
        when its customer already has one for its notification."""
        connection = self._connection()
        meta = self.model._meta
        fields = [field for field in meta.concrete_fields if not field.primary_key]
        sql = "INSERT INTO {} ({}) VALUES ({}) RETURNING {}".format(
            quoted(connection, meta.db_table),
            ", ".join(quoted(connection, field.column) for field in fields),
            ", ".join(["%s"] * len(fields)),
            quoted(connection, meta.pk.column),
        )
        values = [
            field.get_db_prep_save(field.pre_save(delivery, add=True), connection)
            for field in fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            (delivery.pk,) = cursor.fetchone()

    def conclude(self, delivery_id: int, status: str, error: str) -> None:
        """UPDATE the status and error of the delivery with this id (as
        filter(pk=...).update(...) would: its time stays that of the intent)."""
        connection = self._connection()
        meta = self.model._meta
        sql = "UPDATE {} SET {} = %s, {} = %s WHERE {} = %s".format(
            quoted(connection, meta.db_table),
            quoted(connection, meta.get_field("status").column),
            quoted(connection, meta.get_field("error").column),
            quoted(connection, meta.pk.column),
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [status, error, delivery_id])

    def _connection(self) -> BaseDatabaseWrapper:
        return connections[router.db_for_write(self.model)]


def quoted(connection: BaseDatabaseWrapper, name: str | None) -> str:
    """A table's or column's name, quoted for this database."""
    assert name is not None  # every concrete field has a column
    return connection.ops.quote_name(name)


class Delivery(models.Model):
    """What one customer was sent of one notification: the record that makes a
    retried or redelivered batch skip whoever already has it.

    Written as "sending" (the intent) before the message is handed to the SMTP server,
    and turned into the outcome once the server has answered: a row still "sending"
    when its notification is finished belongs to a worker killed in between, and
    becomes "unknown" (playground/services.py says why it is never sent again)."""

    class Status(models.TextChoices):
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        UNKNOWN = "unknown", "Unknown (killed mid-send: not sent again)"

    notification = models.ForeignKey(Notification, models.CASCADE, related_name="deliveries")
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE)
    status = models.CharField(max_length=10, choices=Status)
    error = models.TextField(blank=True)
    at = models.DateTimeField(auto_now=True)

    objects = DeliveryManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["notification", "customer"], name="one_per_customer")
        ]
        indexes = [models.Index(fields=["notification", "status"])]

    def __str__(self):
        return f"{self.notification_id} -> {self.customer_id}: {self.status}"


class PoisonMessage(models.Model):
    """A task message the workers gave up on: it was delivered CELERY_TASK_MAX_DELIVERIES
    times and never finished, each run lost with its worker process (killed: out of
    memory, a crash), so it is kept here instead of being delivered forever
    (playground/poison.py). Replaying it sends it again under its own task id."""

    task_id = models.CharField(max_length=255, unique=True)
    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    deliveries = models.PositiveIntegerField(help_text="Runs that never finished.")
    last_error = models.TextField(blank=True, help_text="How the last run ended, if known.")
    worker = models.CharField(max_length=255, blank=True, help_text="The worker that gave up.")
    given_up_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-given_up_at"]

    def __str__(self):
        return f"{self.task}[{self.task_id}]"
