"""Sessions on a Ray cluster (``pip install kernelagent[ray]``).

``$KERNELAGENT_CLUSTER`` (the CLI's ``--cluster``) names a Ray cluster; then
:func:`kernelagent.api.arun`, :func:`~kernelagent.api.aresume` and
:func:`~kernelagent.api.acontinue` place the session on a node that offers the custom
resource ``kernelagent_sandbox``. Each such node has one node host, a long-lived async
Ray actor that runs many sessions in its event loop: the loop and the Docker sandbox run
on that node exactly as a local run does; events stream back to the submitter. When a
node dies, the submitter places the session again on another node host, which takes it
over in the store and resumes it by replay (:mod:`.submit` says who recovers what).

* :mod:`.placement` what is sent to a node, and the cluster address;
* :mod:`.connection` joining the cluster, with clear errors;
* :mod:`.hosts` finding the node hosts and choosing one (a submitter's side);
* :mod:`.host` the node host actor; :mod:`.placed` one session at work in it;
* :mod:`.submit` placing a session, following its events, placing it again;
* :mod:`.sweep` removing the sandboxes a dead node left on a machine.

Nothing here imports Ray until a session is placed.
"""
