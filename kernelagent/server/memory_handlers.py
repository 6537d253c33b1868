"""The memory API, under ``{base_url}kernelagent/api/``, for the panel's memory section.

=====================================  =====================================================
``GET    memories?q=&limit=&project=``  200 ``{"memories": [memory, ...]}``: all (newest
                                       first), or those matching ``q`` (best first)
``GET    memories/{id}``               200 ``{"memory"}``; 404 unknown id
``DELETE memories/{id}``               200 ``{"memory"}`` (the one forgotten); 404
=====================================  =====================================================

A memory is ``{id, text, kind, user, project, session_id, cell_id, notebook,
dataset_sha256, dataset_name, score, key, created_at, updated_at}`` (``kind``: fact,
finding, dataset or preference), the shape ``kernelagent memory export`` prints. The
memories are those of the user the server runs as, in the server's session store
(``store_url``/``store_home``, by default ``$KERNELAGENT_STORE_URL`` or
``$KERNELAGENT_HOME/sessions.db``), where its sessions and the CLI read and write them.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from kernelagent.memory import MemoryStore, open_memory_store
from kernelagent.server.errors import ApiError
from kernelagent.server.handlers import PREFIX, KernelAgentHandler

MEMORY = r"(?P<memory_id>[A-Za-z0-9]+)"
MAX_LIMIT = 200


class MemoryHandlerBase(KernelAgentHandler):
    def memory_store(self) -> MemoryStore:
        project = self.get_argument("project", None) or None
        store = self.manager.store
        return open_memory_store(store.home, store.given_url, project=project)


class MemoriesHandler(MemoryHandlerBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        store = self.memory_store()
        query = self.get_argument("q", "").strip()
        try:
            limit = int(self.get_argument("limit", "50"))
        except ValueError:
            raise ApiError(400, "limit must be an integer", hint="e.g. limit=20") from None
        limit = max(1, min(limit, MAX_LIMIT))
        memories = store.search(query, limit=limit) if query else store.list()[:limit]
        self.reply(200, {"memories": [memory.as_json() for memory in memories]})


class MemoryHandler(MemoryHandlerBase):
    @web.authenticated
    @authorized
    async def get(self, memory_id: str) -> None:
        self.reply(200, {"memory": self.memory_store().get(memory_id).as_json()})

    @web.authenticated
    @authorized
    async def delete(self, memory_id: str) -> None:
        self.reply(200, {"memory": self.memory_store().forget(memory_id).as_json()})


memory_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"/{PREFIX}/memories", MemoriesHandler),
    (rf"/{PREFIX}/memories/{MEMORY}", MemoryHandler),
]
