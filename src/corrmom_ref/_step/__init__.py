"""Backend-specific code, imported lazily; the core never imports a backend directly."""
