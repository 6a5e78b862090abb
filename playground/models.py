from django.db import models


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
