"""The databases kernelagent keeps its shared state in: SQLite (embedded, the default) or
PostgreSQL (many hosts), chosen by a URL; one transaction API and schema versions per
component, so several table sets (the session index, a memory store) share a database.

* :mod:`.backend` the URL, the :class:`~.backend.Transaction` and
  :class:`~.backend.StoreBackend` protocols, :func:`~.backend.migrate`;
* :mod:`.sqlite`, :mod:`.postgres` the two databases (psycopg is imported only for a
  PostgreSQL URL).
"""
