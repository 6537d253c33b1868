"""Sessions on a Ray cluster (``pip install kernelagent[ray]``).

``$KERNELAGENT_CLUSTER`` (the CLI's ``--cluster``) names a Ray cluster; then
:func:`kernelagent.api.arun` and :func:`kernelagent.api.aresume` place the session as a
Ray actor on a node that offers the custom resource ``kernelagent_sandbox``. The actor
runs the loop and the Docker sandbox on its node exactly as a local run does; events
stream back to the submitter. When the node dies, Ray restarts the actor on another one
(a bounded number of times), and the actor resumes the session from the store by replay.

* :mod:`.placement` what is sent to a node, and the cluster address;
* :mod:`.connection` joining the cluster, with clear errors;
* :mod:`.actor` the actor that runs a session on its node;
* :mod:`.submit` placing a session and following its events.

Nothing here imports Ray until a session is placed.
"""
