"""Docker Engine, registry and test-image fixtures (owned by the replay infrastructure)."""
