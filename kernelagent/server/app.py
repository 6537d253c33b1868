"""The Jupyter server extension: kernelagent sessions for the JupyterLab panel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, Union

from kernelagent.api import DEFAULT_MODEL
from kernelagent.cluster.placement import cluster_address
from kernelagent.database.backend import STORE_URL_VARIABLE
from kernelagent.literals import API_KINDS, SANDBOX_KINDS
from kernelagent.server.handlers import default_handlers
from kernelagent.server.manager import SessionManager
from kernelagent.server.memory_handlers import memory_handlers
from kernelagent.server.request_policy import DEFAULT_ALLOWED_BASE_URLS, RequestPolicy
from kernelagent.server.session_config import Defaults
from kernelagent.session.store import SessionStore


class KernelAgentExtension(ExtensionApp):
    """Runs agent sessions inside the Jupyter server, for the JupyterLab panel."""

    name = "kernelagent"
    description = (
        "Agent sessions whose computer is a sandboxed Jupyter kernel, recorded as notebooks."
    )

    default_model = Unicode(
        DEFAULT_MODEL,
        config=True,
        help="Model for sessions that do not name one (default: $KERNELAGENT_MODEL or "
        "gpt-4.1-mini).",
    )
    default_base_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="OpenAI-compatible endpoint for sessions that do not name one "
        "(default: $OPENAI_BASE_URL, else the OpenAI API).",
    )
    api_key = Unicode(
        None,
        allow_none=True,
        config=True,
        help="API key for the server's own base URL (default: $OPENAI_API_KEY). It is sent only "
        "there (default_base_url, else $OPENAI_BASE_URL, else the OpenAI API), never to a "
        "base_url a request chooses unless its allowed_base_urls entry says api_key: server.",
    )
    allowed_base_urls = List(
        Union([Unicode(), Dict()]),
        DEFAULT_ALLOWED_BASE_URLS,
        config=True,
        help="Other endpoints a request may name as base_url: 'scheme://host[:port|:*][/path]' or "
        '{"url": ..., "api_key": "none" | "server" | "env:NAME"}. They get no key unless the '
        "entry names one. Default: loopback on any port.",
    )
    allow_local_sandbox = Bool(
        False,
        config=True,
        help="Let requests ask for sandbox 'local' (a plain kernel process of this server: NOT "
        "isolated). Off unless default_sandbox is local.",
    )
    network_allow = List(
        Unicode(),
        config=True,
        help="Destinations (HOST[:PORT]) every session's sandbox may reach through the audited "
        "egress proxy (the container still has no network interface).",
    )
    request_network_allow = List(
        Unicode(),
        config=True,
        help="What a request may add with allow_net: each entry it asks for must be covered by one "
        "of these rules (e.g. '*.pythonhosted.org:443'). Default: nothing.",
    )
    network_headers = Dict(
        config=True,
        help="Secret headers the egress proxy adds to plain-HTTP requests, by destination rule; "
        "${NAME} is read from the server's environment and never enters the sandbox.",
    )
    default_api = Enum(
        list(API_KINDS),
        "responses",
        config=True,
        help="Model API for sessions that do not name one: responses, chat (Chat Completions, "
        "for most local servers) or code-blocks (for models that cannot call tools).",
    )
    default_sandbox = Enum(
        list(SANDBOX_KINDS),
        "docker",
        config=True,
        help="Where kernels run: docker (isolated container) or local (a plain subprocess, NOT "
        "isolated). "
        "Also used by replay.",
    )
    default_max_steps = Integer(
        30, config=True, help="Model calls per run when a session does not say."
    )
    default_attempts = Integer(
        1,
        config=True,
        help="Parallel attempts per new task when a session does not say (each in its own "
        "sandbox; the answer most attempts agree on wins).",
    )
    cell_timeout = Float(
        300.0, config=True, help="Seconds a cell may run before it is interrupted."
    )
    sessions_dir = Unicode(
        "kernelagent-sessions",
        config=True,
        help="Where the notebooks of sessions started from JupyterLab are written, relative to the "
        "server's root_dir (so JupyterLab can open them).",
    )
    workspaces_next_to_notebooks = Bool(
        True,
        config=True,
        help="Give each session its workspace (the sandbox's /workspace) in sessions_dir, next to "
        "its "
        "notebook, so its files show in JupyterLab; if False, workspaces go under store_home.",
    )
    store_home = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The kernelagent home: session directories and workspaces, and the SQLite index "
        "unless store_url names another "
        "(default: $KERNELAGENT_HOME or <jupyter data dir>/kernelagent, as for the CLI).",
    )
    store_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The database of the session index and event logs: sqlite:///PATH or "
        "postgresql://USER@HOST/DB (default: $KERNELAGENT_STORE_URL, else SQLite in store_home).",
    )
    cluster = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Run the sessions started from JupyterLab on this Ray cluster, HOST:PORT of its "
        "head (default: $KERNELAGENT_CLUSTER; empty: in this server). Give store_url a "
        "database every node reaches and store_home a filesystem every node shares. Sessions "
        "that work in a notebook open in JupyterLab run on that notebook's kernel.",
    )
    persist_events = Bool(
        True,
        config=True,
        help="Keep each session's event log in the session store so a restarted server "
        "still serves its history and keeps numbering events after it.",
    )

    manager: SessionManager

    def initialize_settings(self) -> None:
        assert self.serverapp is not None
        store = SessionStore(
            Path(self.store_home).expanduser() if self.store_home else None, url=self.store_url
        )
        # The sessions this server runs (and the processes they start) keep their memory
        # in the same store, as the CLI's --store does.
        if self.store_url:
            os.environ[STORE_URL_VARIABLE] = store.given_url
        if self.store_home:
            os.environ["KERNELAGENT_HOME"] = str(store.home)
        self.manager = SessionManager(
            store=store,
            root_dir=self.serverapp.root_dir,
            sessions_dir=self.sessions_dir,
            defaults=Defaults(
                model=self.default_model,
                base_url=self.default_base_url or None,
                api=self.default_api,
                sandbox=self.default_sandbox,
                max_steps=self.default_max_steps,
                attempts=self.default_attempts,
                cell_timeout=self.cell_timeout,
            ),
            workspaces_next_to_notebooks=self.workspaces_next_to_notebooks,
            persist_events=self.persist_events,
            logger=self.log,
            cluster=cluster_address(self.cluster),
            policy=RequestPolicy.from_settings(
                base_url=self.default_base_url,
                api_key=self.api_key,
                allowed_base_urls=list(self.allowed_base_urls),
                allow_local_sandbox=self.allow_local_sandbox,
                default_sandbox=self.default_sandbox,
                network_allow=list(self.network_allow),
                request_network_allow=list(self.request_network_allow),
                network_headers={
                    rule: dict(headers) for rule, headers in self.network_headers.items()
                },
            ),
        )
        self.log.info(
            "kernelagent: session store %s, notebooks in %s", store.home, self.manager.sessions_path
        )

    def initialize_handlers(self) -> None:
        self.handlers.extend(default_handlers)
        self.handlers.extend(memory_handlers)

    def current_activity(self) -> Any:
        """Running sessions count as activity (the server is not idle-culled under them)."""
        running = self.manager.running_ids() if hasattr(self, "manager") else []
        return running or None

    async def stop_extension(self) -> None:
        """Stop running sessions (they become interrupted; notebooks stay valid) and
        shut down the sandboxes of sessions run by this server."""
        if hasattr(self, "manager"):
            await self.manager.shutdown()
