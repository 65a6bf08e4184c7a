"""Drop-in adapters for agent frameworks, each an optional extra imported on first use:

- `securestore.integrations.openai_agents.SecureStoreSession` (extra `openai-agents`)
- `securestore.integrations.langgraph.SecureStoreSaver` (extra `langgraph`)
- `securestore.integrations.adk.SecureStoreSessionService` (extra `adk`)

Importing this package imports no framework."""
