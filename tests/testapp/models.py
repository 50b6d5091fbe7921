"""Models the outbox tests publish from."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from django_ensign import registry


@registry.publishes("orders.events", on_delete="OrderCancelled")
class Order(models.Model):
    """Publishes OrderCreated / OrderUpdated / OrderCancelled, ordered per order."""

    reference = models.CharField(max_length=40)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    customer = models.CharField(max_length=40, blank=True, default="")

    def __str__(self) -> str:
        return self.reference


class RushOrder(Order):
    """A proxy: publishes through Order's registration, under its own name."""

    class Meta:
        proxy = True


class GiftOrder(Order):
    """A multi-table child of Order that publishes nothing itself."""

    message = models.CharField(max_length=100, blank=True, default="")


@registry.publishes(
    "customers",
    on_create="CustomerJoined",
    on_update=False,
    on_delete=False,
    serializer=lambda c: {"name": c.name},
    key=lambda c: c.name,
)
class Customer(models.Model):
    """Publishes only creations, keyed by name, with a custom serializer."""

    name = models.CharField(max_length=40)

    def __str__(self) -> str:
        return self.name


class Note(models.Model):
    """Publishes nothing by itself (tests register it through settings)."""

    text = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.text


@registry.publishes("documents")
class Document(models.Model):
    """Publishes a file's name and raw bytes with the default serializer."""

    title = models.CharField(max_length=40)
    attachment = models.FileField(upload_to="documents/", blank=True)
    blob = models.BinaryField(null=True)
    signed = models.DateTimeField(null=True, blank=True)
    notes = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    def __str__(self) -> str:
        return self.title


@registry.publishes("parcels")
class Parcel(models.Model):
    """Publishes a generated column, which Django does not refresh after an update."""

    grams = models.PositiveIntegerField()
    count = models.PositiveIntegerField(default=1)
    total_grams = models.GeneratedField(
        expression=models.F("grams") * models.F("count"),
        output_field=models.PositiveIntegerField(),
        db_persist=True,
    )

    def __str__(self) -> str:
        return f"{self.count} x {self.grams} g"


class Team(models.Model):
    """Customers in teams, through Membership (which tests may register to publish)."""

    name = models.CharField(max_length=40)
    members = models.ManyToManyField(Customer, through="Membership")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """The through model of Team.members."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)

    def __str__(self) -> str:
        return f"{self.customer} in {self.team}"
