"""A small MCP server for the tests (stdio, the official SDK's FastMCP): kernelagent's
agent calls its tool as a host tool."""

import os

from mcp.server.fastmcp import FastMCP

server = FastMCP("prices", log_level="WARNING")
PRICES = {"apple": 42, "pear": 17}


@server.tool()
def price(item: str) -> str:
    """The price of an item in cents, and which process answered."""
    if item not in PRICES:
        raise ValueError(f"no price for {item!r}; known: {', '.join(PRICES)}")
    return f"{item} costs {PRICES[item]} cents (pid {os.getpid()}, parent {os.getppid()})"


if __name__ == "__main__":
    server.run("stdio")
