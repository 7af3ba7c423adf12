"""The LangGraph agent: intake → plan → execute → compose → verify → audit."""
