"""The agent's life: attach, facts, sampling, keep-alive, ending, state."""
