"""``kernelagent mcp``: kernelagent's sandboxed, recorded kernel as a Model Context Protocol
server, for agents that already exist (Claude Desktop, Codex CLI, the Agents SDK, ...).

Each client connection is one kernelagent session: the same sandbox, recorder, store,
approval rules and resume path as ``kernelagent run``; the client chooses the actions where
kernelagent's own model would. Importing this package imports no MCP code: the SDK is
loaded by :mod:`kernelagent.mcp_server.server` only.
"""
