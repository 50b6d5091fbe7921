"""Whether a transaction this package opened can still commit.

Leaving an outermost ``atomic()`` rolls back without a word when the transaction is
doomed, so the code that opened one on someone's behalf (a published save, a batch
of handlers) asks first and raises instead.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

#: libpq's PQTRANS_INERROR (psycopg 3's ``TransactionStatus.INERROR``; psycopg2's int alike).
_PQ_IN_ERROR = 3


def doomed(connection: BaseDatabaseWrapper) -> bool:
    """True if the transaction can only roll back.

    Django marks it when an ORM write failed inside it; PostgreSQL aborts it on any
    failed statement, also one whose error the caller caught from ``cursor.execute``
    or a query, which Django does not mark.
    """
    if connection.needs_rollback:
        return True
    if connection.vendor != "postgresql" or connection.connection is None:
        return False
    info = getattr(connection.connection, "info", None)
    return getattr(info, "transaction_status", None) == _PQ_IN_ERROR
