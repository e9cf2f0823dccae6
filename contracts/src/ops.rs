//! Operation specs: what every surface (REST, MCP, EAGER, CLI) exposes.
